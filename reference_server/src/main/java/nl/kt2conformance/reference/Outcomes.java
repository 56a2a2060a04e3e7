package nl.kt2conformance.reference;

import org.hl7.fhir.r4.model.OperationOutcome;

/** OperationOutcomes in the shape HAPI gives its own errors: one issue with severity, code and diagnostics. */
final class Outcomes {
  private Outcomes() {}

  static OperationOutcome error(OperationOutcome.IssueType code, String diagnostics, String expression) {
    OperationOutcome outcome = new OperationOutcome();
    OperationOutcome.OperationOutcomeIssueComponent issue = outcome.addIssue()
        .setSeverity(OperationOutcome.IssueSeverity.ERROR)
        .setCode(code)
        .setDiagnostics(diagnostics);
    if (expression != null) {
      issue.addExpression(expression);
    }
    return outcome;
  }

  static OperationOutcome information(String diagnostics) {
    OperationOutcome outcome = new OperationOutcome();
    outcome.addIssue()
        .setSeverity(OperationOutcome.IssueSeverity.INFORMATION)
        .setCode(OperationOutcome.IssueType.INFORMATIONAL)
        .setDiagnostics(diagnostics);
    return outcome;
  }
}
