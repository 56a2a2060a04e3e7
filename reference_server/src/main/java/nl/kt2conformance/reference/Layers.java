package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.exceptions.AuthenticationException;
import ca.uhn.fhir.rest.server.exceptions.ForbiddenOperationException;
import ca.uhn.fhir.rest.server.exceptions.InvalidRequestException;
import ca.uhn.fhir.rest.server.exceptions.UnclassifiedServerFailureException;
import ca.uhn.fhir.rest.server.exceptions.UnprocessableEntityException;
import ca.uhn.fhir.rest.server.interceptor.RequestValidatingInterceptor;
import ca.uhn.fhir.rest.server.servlet.ServletRequestDetails;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.Coding;
import org.hl7.fhir.r4.model.DomainResource;
import org.hl7.fhir.r4.model.Extension;
import org.hl7.fhir.r4.model.OperationOutcome.IssueType;
import org.hl7.fhir.r4.model.Reference;
import org.hl7.fhir.r4.model.Task;

/**
 * The production Koppeltaal server's request layers, re-implemented after reading its source
 * (koppeltaal/interceptor/*), on the same HAPI pointcuts so they run in the same order:
 * PRE_PROCESSED media types (415/406) and bearer token (401); POST_PROCESSED JSON syntax (400,
 * first) and profile validation (422); PRE_HANDLED client-set resource-origin (400) with the
 * server's own injected, then the sub-task rule (422). The storage rules (412 profile, 412
 * If-Match, 400 reference, 409 delete) run in {@link StoredResources}, where production's DAO
 * runs them.
 */
final class Layers {
  private Layers() {}

  /** Request attribute holding the id of the client the request is from (its Device id). */
  static final String CLIENT_ATTRIBUTE = "kt2.client";

  private static final List<String> SUPPORTED_MIME_TYPES = List.of(
      "*/*", "xml", "json", "application/fhir+xml", "application/xml", "application/fhir+json",
      "application/json", "html/json", "html/xml");
  private static final List<String> UNSUPPORTED_MIME_TYPES = List.of(
      "application/x-turtle", "application/fhir+turtle", "ttl", "html/turtle");

  /** 415 for an unsupported Content-Type, 406 for an unsupported Accept (an absent header is fine). */
  @Interceptor
  static final class MediaTypes {
    @Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_PROCESSED)
    public void check(HttpServletRequest request, HttpServletResponse response) {
      check(request, "Content-Type", 415);
      check(request, "Accept", 406);
    }

    private static void check(HttpServletRequest request, String header, int status) {
      String raw = request.getHeader(header);
      if (raw == null || raw.isBlank()) {
        return;
      }
      boolean unsupported = false;
      for (String value : raw.split(",")) {
        // As production: the part before ';' compared as is (no trimming).
        String type = value.contains(";") ? value.substring(0, value.indexOf(';')) : value;
        if (SUPPORTED_MIME_TYPES.contains(type)) {
          return;
        }
        unsupported |= UNSUPPORTED_MIME_TYPES.contains(type);
      }
      drain(request);
      throw new UnclassifiedServerFailureException(status, String.format(
          "%s Media Type [%s] provided in header [%s]. Supported media types are %s",
          unsupported ? "Unsupported" : "Unknown", raw, header, SUPPORTED_MIME_TYPES));
    }
  }

  /** Who may call: a static token, SMART-issued JWTs, or (no token configured) anyone. */
  interface Authenticator {
    /** The client id the bearer token belongs to, or null when the token is not accepted. */
    String clientFor(String bearerToken);
  }

  /** 401 without a valid bearer token (every request but GET metadata); remembers the client. */
  @Interceptor
  static final class BearerToken {
    private final Authenticator authenticator;
    private final String anonymousClient;

    BearerToken(Authenticator authenticator, String anonymousClient) {
      this.authenticator = authenticator;
      this.anonymousClient = anonymousClient;
    }

    @Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_PROCESSED)
    public void check(HttpServletRequest request, HttpServletResponse response) {
      if (authenticator == null) {
        request.setAttribute(CLIENT_ATTRIBUTE, anonymousClient);
        return;
      }
      String path = request.getPathInfo() == null ? "" : request.getPathInfo();
      if ("GET".equals(request.getMethod()) && (path.equals("/metadata") || path.startsWith("/metadata?"))) {
        return;
      }
      String header = request.getHeader("Authorization");
      String token = header != null && header.regionMatches(true, 0, "Bearer ", 0, 7) ? header.substring(7).trim() : "";
      String client = token.isEmpty() ? null : authenticator.clientFor(token);
      if (client == null) {
        drain(request);
        AuthenticationException refused = new AuthenticationException("Unauthorized");
        refused.addResponseHeader("WWW-Authenticate", "Bearer realm=\"kt2conformance\"");
        throw refused;
      }
      request.setAttribute(CLIENT_ATTRIBUTE, client);
    }
  }

  /** 400 for a body that is not a JSON object, before the validator sees it (production's Gson check). */
  @Interceptor
  static final class JsonSyntax {
    private static final ObjectMapper STRICT = new ObjectMapper()
        .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
        .disable(JsonParser.Feature.ALLOW_COMMENTS);

    @Hook(value = Pointcut.SERVER_INCOMING_REQUEST_POST_PROCESSED, order = Integer.MIN_VALUE)
    public void check(RequestDetails request) {
      String contentType = request.getHeader("Content-Type");
      if (contentType == null || !contentType.contains("json")) {
        return;
      }
      byte[] body = request.loadRequestContents();
      if (body == null || new String(body, StandardCharsets.UTF_8).isBlank()) {
        return;
      }
      try {
        JsonNode node = STRICT.readTree(body);
        if (node == null || !node.isObject()) {
          throw new InvalidRequestException("Invalid JSON syntax: the body must be a JSON object");
        }
      } catch (java.io.IOException e) {
        String message = e.getMessage() == null ? "unreadable" : e.getMessage().split("\n")[0];
        throw new InvalidRequestException("Invalid JSON syntax: " + message);
      }
    }
  }

  /**
   * 422 when the validator finds an ERROR: HAPI's RequestValidatingInterceptor with production's
   * settings (failOnSeverity ERROR, validator exceptions not ignored), for create and update.
   * $validate answers with the validator's outcome itself instead.
   */
  @Interceptor
  static final class ProfileValidation {
    private final RequestValidatingInterceptor delegate = new RequestValidatingInterceptor();

    ProfileValidation(Validation validation) {
      delegate.setValidator(validation.validator());
      delegate.setFailOnSeverity(ResultSeverityEnum.ERROR);
      delegate.setIgnoreValidatorExceptions(false);
      delegate.setAddResponseHeaderOnSeverity(null);
    }

    @Hook(Pointcut.SERVER_INCOMING_REQUEST_POST_PROCESSED)
    public boolean check(RequestDetails details, HttpServletRequest request, HttpServletResponse response) {
      RestOperationTypeEnum operation = details.getRestOperationType();
      if (operation != RestOperationTypeEnum.CREATE && operation != RestOperationTypeEnum.UPDATE) {
        return true;
      }
      return delegate.incomingRequestPostProcessed(details, request, response);
    }
  }

  /**
   * resource-origin is the server's: a create that sets one is refused (400) and the server adds
   * its own, pointing at the requesting client's Device; an update keeps the stored one (a
   * different Device is 403, a non-Device reference or more than one is 400).
   */
  @Interceptor(order = Integer.MAX_VALUE)
  static final class ResourceOrigin {
    private final StoredResources.Registry registry;

    ResourceOrigin(StoredResources.Registry registry) {
      this.registry = registry;
    }

    @Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLED)
    public void handle(RequestDetails details) {
      IBaseResource resource = details.getResource();
      if (!(resource instanceof DomainResource domain) || resource instanceof CodeSystem) {
        return;
      }
      RestOperationTypeEnum operation = details.getRestOperationType();
      List<Extension> sent = domain.getExtensionsByUrl(Koppeltaal.RESOURCE_ORIGIN);
      if (operation == RestOperationTypeEnum.UPDATE) {
        DomainResource stored = (DomainResource) registry.readCurrent(details.getResourceName(), details.getId().getIdPart());
        List<Extension> kept = stored.getExtensionsByUrl(Koppeltaal.RESOURCE_ORIGIN);
        if (sent.isEmpty()) {
          kept.stream().findFirst().ifPresent(extension -> domain.addExtension(extension.copy()));
        } else if (sent.size() > 1) {
          throw new InvalidRequestException("Cannot provide more than one resource-origin extension");
        } else {
          String device = deviceOf(sent.get(0));
          String storedDevice = kept.isEmpty() ? null : deviceOf(kept.get(0));
          if (storedDevice != null && !storedDevice.equals(device)) {
            throw new ForbiddenOperationException("Unauthorized");
          }
        }
        return;
      }
      if (operation != RestOperationTypeEnum.CREATE) {
        return;
      }
      if (!sent.isEmpty()) {
        throw new InvalidRequestException("Not allowed to set extension with system " + Koppeltaal.RESOURCE_ORIGIN);
      }
      String client = clientOf(details);
      Reference device = new Reference("Device/" + client);
      device.setType("Device");
      domain.addExtension(new Extension(Koppeltaal.RESOURCE_ORIGIN, device));
    }

    private static String deviceOf(Extension extension) {
      if (!(extension.getValue() instanceof Reference reference)
          || reference.getReference() == null || !reference.getReference().startsWith("Device/")) {
        throw new InvalidRequestException(
            "Expecting a Device reference value for extension with system " + Koppeltaal.RESOURCE_ORIGIN);
      }
      return reference.getReferenceElement().getIdPart();
    }
  }

  /**
   * Reads an unread request body before a refusal, so the connection stays usable: a server that
   * answers before reading makes Jetty close it under a client that reuses it.
   */
  static void drain(HttpServletRequest request) {
    try {
      request.getInputStream().transferTo(java.io.OutputStream.nullOutputStream());
    } catch (java.io.IOException | IllegalStateException ignored) {
      // nothing more to read
    }
  }

  /** The client id recorded by {@link BearerToken} for this request. */
  static String clientOf(RequestDetails details) {
    if (details instanceof ServletRequestDetails servlet) {
      Object client = servlet.getServletRequest().getAttribute(CLIENT_ATTRIBUTE);
      if (client != null) {
        return client.toString();
      }
    }
    throw new InvalidRequestException("Device not present");
  }

  /** 422 for a Task coded as a sub-task (code `view`) without partOf. */
  @Interceptor(order = Integer.MAX_VALUE)
  static final class SubTask {
    @Hook(Pointcut.SERVER_INCOMING_REQUEST_PRE_HANDLED)
    public void handle(RequestDetails details) {
      RestOperationTypeEnum operation = details.getRestOperationType();
      if (!(details.getResource() instanceof Task task)
          || (operation != RestOperationTypeEnum.CREATE && operation != RestOperationTypeEnum.UPDATE)
          || !task.getPartOf().isEmpty()) {
        return;
      }
      for (Coding coding : task.getCode().getCoding()) {
        // Production compares coding.getSystem().equals(...), which fails with a 500 for a coding
        // without system; this server skips such a coding instead.
        if (Koppeltaal.TASK_CODE_SYSTEM.equals(coding.getSystem()) && Koppeltaal.SUBTASK_CODES.contains(coding.getCode())) {
          UnprocessableEntityException refused = new UnprocessableEntityException(FhirContext.forR4Cached(),
              Outcomes.error(IssueType.PROCESSING,
                  String.format("Task with code '%s' should have a 'partOf' reference", coding.getCode()), "Task.partOf"));
          throw refused;
        }
      }
    }
  }
}
