'use strict';
/**
 * OperationOutcome helpers. Every error response of the reference server carries an
 * OperationOutcome whose issues have severity, code, diagnostics and (where an element is at
 * fault) an `expression` path, because that is what conformance tests assert on.
 */

/** An HTTP error that the request pipeline turns into a status code plus OperationOutcome. */
class FhirError extends Error {
  /**
   * @param {number} status HTTP status code
   * @param {object[]} issues OperationOutcome.issue entries
   * @param {Record<string,string>} [headers] extra response headers (e.g. WWW-Authenticate)
   */
  constructor(status, issues, headers = {}) {
    super(issues.map((i) => i.diagnostics).join('; '));
    this.status = status;
    this.issues = issues;
    this.headers = headers;
  }
}

/**
 * Builds one issue.
 * @param {string} code IssueType code (invalid, structure, processing, not-found, security, ...)
 * @param {string} diagnostics human-readable explanation
 * @param {string} [expression] FHIRPath-style location of the offending element
 * @param {'error'|'warning'|'information'|'fatal'} [severity]
 */
function issue(code, diagnostics, expression, severity = 'error') {
  const result = { severity, code, diagnostics };
  if (expression) result.expression = [expression];
  return result;
}

/** Shorthand for an error with a single issue. */
function fail(status, code, diagnostics, expression) {
  return new FhirError(status, [issue(code, diagnostics, expression)]);
}

/** Wraps issues into an OperationOutcome resource. */
function operationOutcome(issues) {
  return { resourceType: 'OperationOutcome', issue: issues };
}

module.exports = { FhirError, issue, fail, operationOutcome };
