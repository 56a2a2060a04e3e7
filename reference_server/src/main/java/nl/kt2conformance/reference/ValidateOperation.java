package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.validation.ValidationResult;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.hl7.fhir.r4.model.OperationOutcome;
import org.hl7.fhir.r4.model.OperationOutcome.IssueType;

/**
 * POST [base]/[Type]/$validate (and [base]/$validate): the validator's verdict on a resource
 * without storing it. 200 with the validator's OperationOutcome when it finds no error, 412 with
 * it otherwise (as HAPI's JPA server answers $validate); 400 for a body that is not a JSON
 * object. The body is the resource as sent, validated as text (so unknown elements and bad codes
 * are reported as the create path reports them), or a Parameters with `resource` (and
 * `profile`); `?profile=URL` validates against that profile too. Answered right after the media
 * type and token layers, so nothing of the create path (resource-origin, storage) runs.
 */
@Interceptor
final class ValidateOperation {
  private static final Pattern PATH = Pattern.compile("^/(?:([A-Z][A-Za-z]+)/)?\\$validate/?$");
  private static final ObjectMapper JSON = new ObjectMapper();

  private final FhirContext ctx;
  private final Validation validation;

  ValidateOperation(FhirContext ctx, Validation validation) {
    this.ctx = ctx;
    this.validation = validation;
  }

  @Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_PROCESSED)
  public boolean handle(HttpServletRequest request, HttpServletResponse response) throws IOException {
    String path = request.getPathInfo() == null ? "" : request.getPathInfo();
    Matcher matcher = PATH.matcher(path);
    if (!matcher.matches() || !"POST".equals(request.getMethod())) {
      return true;
    }
    String text = new String(request.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    String profile = request.getParameter("profile");
    JsonNode node;
    try {
      node = JSON.readTree(text);
    } catch (IOException e) {
      node = null;
    }
    if (node == null || !node.isObject()) {
      answer(response, 400, Outcomes.error(IssueType.STRUCTURE, "$validate needs a JSON resource in the body", null));
      return false;
    }
    if ("Parameters".equals(node.path("resourceType").asText())) {
      JsonNode resource = null;
      for (JsonNode parameter : node.path("parameter")) {
        String name = parameter.path("name").asText();
        if (name.equals("resource") && parameter.path("resource").isObject()) {
          resource = parameter.path("resource");
        } else if (name.equals("profile") && profile == null) {
          for (String field : new String[] {"valueCanonical", "valueUri", "valueString"}) {
            if (parameter.path(field).isTextual()) {
              profile = parameter.path(field).asText();
            }
          }
        }
      }
      if (resource == null) {
        answer(response, 400, Outcomes.error(IssueType.REQUIRED, "a Parameters body needs a 'resource' parameter", null));
        return false;
      }
      node = resource;
      text = JSON.writeValueAsString(resource);
    }
    String type = matcher.group(1);
    if (type != null && !type.equals(node.path("resourceType").asText())) {
      answer(response, 400, Outcomes.error(IssueType.INVALID,
          "resourceType " + node.path("resourceType").asText() + " does not match the URL's " + type, null));
      return false;
    }
    ValidationResult result = validation.validate(text, profile);
    OperationOutcome outcome = (OperationOutcome) result.toOperationOutcome();
    if (outcome.getIssue().isEmpty()) {
      outcome = Outcomes.information("No issues detected during validation");
    }
    answer(response, result.isSuccessful() ? 200 : 412, outcome);
    return false;
  }

  private void answer(HttpServletResponse response, int status, OperationOutcome outcome) throws IOException {
    response.setStatus(status);
    response.setContentType("application/fhir+json;charset=utf-8");
    response.getOutputStream().write(ctx.newJsonParser().encodeResourceToString(outcome).getBytes(StandardCharsets.UTF_8));
  }
}
