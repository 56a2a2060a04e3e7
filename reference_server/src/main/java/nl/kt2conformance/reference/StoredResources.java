package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.RuntimeSearchParam;
import ca.uhn.fhir.rest.api.RestSearchParameterTypeEnum;
import ca.uhn.fhir.rest.annotation.Create;
import ca.uhn.fhir.rest.annotation.Delete;
import ca.uhn.fhir.rest.annotation.IdParam;
import ca.uhn.fhir.rest.annotation.Read;
import ca.uhn.fhir.rest.annotation.ResourceParam;
import ca.uhn.fhir.rest.annotation.Search;
import ca.uhn.fhir.rest.annotation.Update;
import ca.uhn.fhir.rest.api.MethodOutcome;
import ca.uhn.fhir.rest.api.server.IBundleProvider;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.IResourceProvider;
import ca.uhn.fhir.rest.server.SimpleBundleProvider;
import ca.uhn.fhir.rest.server.exceptions.InvalidRequestException;
import ca.uhn.fhir.rest.server.exceptions.PreconditionFailedException;
import ca.uhn.fhir.rest.server.exceptions.ResourceGoneException;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import ca.uhn.fhir.rest.server.exceptions.ResourceVersionConflictException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.instance.model.api.IIdType;
import org.hl7.fhir.r4.model.Base;
import org.hl7.fhir.r4.model.CanonicalType;
import org.hl7.fhir.r4.model.IdType;
import org.hl7.fhir.r4.model.OperationOutcome.IssueType;
import org.hl7.fhir.r4.model.Property;
import org.hl7.fhir.r4.model.Reference;
import org.hl7.fhir.r4.model.Resource;

/**
 * Create, read, update, delete, search and $validate for one resource type, in memory, with the
 * rules production's JPA layer applies at storage time, in its order: a create checks the KT2
 * profile in meta.profile (412) and then that every reference resolves (400); an update checks
 * the version in If-Match (409 when stale), the profile (412), that If-Match is there at all
 * (412) and the references (400); a delete is refused while another resource refers to the
 * target (409). Ids are server-assigned UUIDs; versions count from 1. ($validate is
 * {@link ValidateOperation}.)
 */
final class StoredResources implements IResourceProvider {

  /** Lookups across all types (reference checks, resource-origin on update). */
  static final class Registry {
    private final FhirContext ctx;
    private final Store store;

    Registry(FhirContext ctx, Store store) {
      this.ctx = ctx;
      this.store = store;
    }

    /** The current version of Type/id; 404 when never stored, 410 when deleted. */
    IBaseResource readCurrent(String type, String id) {
      String key = type + "/" + id;
      Store.Version version = store.current(key);
      if (version == null) {
        throw new ResourceNotFoundException(new IdType(type, id));
      }
      if (version.deleted()) {
        throw new ResourceGoneException(new IdType(type, id, Long.toString(version.number())));
      }
      return parse(version.json());
    }

    IBaseResource parse(String json) {
      return ctx.newJsonParser().parseResource(json);
    }
  }

  private static final Set<String> SEARCH_CONTROL = Set.of(
      "_id", "_count", "_summary", "_format", "_pretty", "_elements", "_total", "_getpagesoffset", "_getpages");

  private final FhirContext ctx;
  private final Class<? extends IBaseResource> type;
  private final String typeName;
  private final Store store;
  private final Registry registry;
  private final Validation validation;

  StoredResources(FhirContext ctx, String typeName, Store store, Registry registry, Validation validation) {
    this.ctx = ctx;
    this.typeName = typeName;
    this.type = ctx.getResourceDefinition(typeName).getImplementingClass();
    this.store = store;
    this.registry = registry;
    this.validation = validation;
  }

  @Override
  public Class<? extends IBaseResource> getResourceType() {
    return type;
  }

  @Create
  public MethodOutcome create(@ResourceParam IBaseResource resource, RequestDetails request) {
    requireProfile(resource);
    String id = UUID.randomUUID().toString();
    resource.setId(new IdType(typeName, id));
    Map<String, String> references = checkReferences((Resource) resource, request);
    Store.Version version = save(resource, id, references);
    return new MethodOutcome(resource.getIdElement(), true).setCreated(true).setResource(resource);
  }

  @Read(version = true)
  public IBaseResource read(@IdParam IIdType id) {
    String key = typeName + "/" + id.getIdPart();
    if (!id.hasVersionIdPart()) {
      return registry.readCurrent(typeName, id.getIdPart());
    }
    for (Store.Version version : store.history(key)) {
      if (Long.toString(version.number()).equals(id.getVersionIdPart())) {
        if (version.deleted()) {
          throw new ResourceGoneException(id);
        }
        return registry.parse(version.json());
      }
    }
    throw new ResourceNotFoundException(id);
  }

  @Update
  public MethodOutcome update(@IdParam IIdType id, @ResourceParam IBaseResource resource, RequestDetails request) {
    String key = typeName + "/" + id.getIdPart();
    Store.Version current = store.current(key);
    if (current == null) {
      throw new ResourceNotFoundException(new IdType(typeName, id.getIdPart()));
    }
    if (current.deleted()) {
      throw new ResourceGoneException(new IdType(typeName, id.getIdPart()));
    }
    if (id.hasVersionIdPart() && !id.getVersionIdPart().equals(Long.toString(current.number()))) {
      throw new ResourceVersionConflictException("Trying to update " + typeName + "/" + id.getIdPart() + "/_history/"
          + id.getVersionIdPart() + " but this is not the current version");
    }
    requireProfile(resource);
    String ifMatch = request.getHeader("If-Match");
    if (ifMatch == null || ifMatch.isBlank()) {
      throw new PreconditionFailedException("If-Match header is required on updates");
    }
    resource.setId(new IdType(typeName, id.getIdPart()));
    Map<String, String> references = checkReferences((Resource) resource, request);
    save(resource, id.getIdPart(), references);
    return new MethodOutcome(resource.getIdElement(), false).setCreated(false).setResource(resource);
  }

  @Delete
  public MethodOutcome delete(@IdParam IIdType id) {
    String key = typeName + "/" + id.getIdPart();
    registry.readCurrent(typeName, id.getIdPart()); // 404 / 410 as production's authorization read
    Store.Referrer referrer = store.firstReferrer(key, Koppeltaal.DELETE_EXEMPT_PATHS);
    if (referrer != null) {
      throw new ResourceVersionConflictException("Unable to delete " + key
          + " because at least one resource has a reference to this resource. First reference found was resource "
          + referrer.source() + " in path " + referrer.path());
    }
    store.delete(key);
    MethodOutcome outcome = new MethodOutcome(new IdType(typeName, id.getIdPart()));
    outcome.setOperationOutcome(Outcomes.information("Successfully deleted 1 resource(s)."));
    return outcome;
  }

  @Search(allowUnknownParams = true)
  public IBundleProvider search(RequestDetails request) {
    Set<String> wanted = null;
    for (Map.Entry<String, String[]> parameter : request.getParameters().entrySet()) {
      String name = parameter.getKey();
      if (!SEARCH_CONTROL.contains(name)) {
        throw new InvalidRequestException("Unknown search parameter \"" + name + "\" for resource type \""
            + typeName + "\". This server supports only _id, _count and _summary.");
      }
      if (name.equals("_id")) {
        wanted = new java.util.HashSet<>();
        for (String value : parameter.getValue()) {
          wanted.addAll(Arrays.asList(value.split(",")));
        }
      }
    }
    List<IBaseResource> found = new ArrayList<>();
    for (String json : store.all(typeName)) {
      IBaseResource resource = registry.parse(json);
      if (wanted == null || wanted.contains(resource.getIdElement().getIdPart())) {
        found.add(resource);
      }
    }
    return new SimpleBundleProvider(found);
  }

  /** Stores a version, setting meta.versionId and lastUpdated to the server's. */
  Store.Version save(IBaseResource resource, String id, Map<String, String> references) {
    Resource r = (Resource) resource;
    synchronized (store) {
      String key = typeName + "/" + id;
      long next = store.history(key).size() + 1L;
      Date now = new Date();
      r.getMeta().setVersionId(Long.toString(next));
      r.getMeta().setLastUpdated(now);
      r.setId(new IdType(typeName, id, Long.toString(next)));
      Store.Version version = store.put(key, ctx.newJsonParser().encodeResourceToString(r), references);
      return version;
    }
  }

  /** 412 unless meta.profile declares the type's KT2 profile (production's repository rule). */
  private void requireProfile(IBaseResource resource) {
    String required = Koppeltaal.REQUIRED_PROFILE.get(typeName);
    if (required == null) {
      return;
    }
    for (CanonicalType declared : ((Resource) resource).getMeta().getProfile()) {
      String url = declared.getValue() == null ? "" : declared.getValue().split("\\|")[0];
      if (url.equals(required)) {
        return;
      }
    }
    throw new PreconditionFailedException("Resource of type \"" + typeName
        + "\" does not declare conformance to profile from: [" + required + "]",
        Outcomes.error(IssueType.PROCESSING, "Resource of type \"" + typeName
            + "\" does not declare conformance to profile from: [" + required + "]", typeName + ".meta.profile"));
  }

  /**
   * 400 for a relative literal reference (Type/id, or an absolute URL on this server) to a
   * resource that is not stored; returns the references found (target → path) for the delete
   * rule. Contained resources, #fragments, other servers' URLs and logical references are not
   * followed, as HAPI's JPA resource linking does not follow them.
   */
  private Map<String, String> checkReferences(Resource resource, RequestDetails request) {
    Map<String, String> found = new LinkedHashMap<>();
    collect(resource, typeName, found, request.getFhirServerBase());
    for (Map.Entry<String, String> entry : found.entrySet()) {
      String targetType = entry.getKey().substring(0, entry.getKey().indexOf('/'));
      Set<String> allowed = searchTargets(entry.getValue());
      if (allowed != null && !allowed.contains(targetType)) {
        String message = "Invalid reference found at path '" + entry.getValue() + "'. Resource type '" + targetType
            + "' is not valid for this path";
        throw new InvalidRequestException(message, Outcomes.error(IssueType.PROCESSING, message, entry.getValue()));
      }
    }
    for (Map.Entry<String, String> entry : found.entrySet()) {
      if (!store.isLive(entry.getKey())) {
        throw new InvalidRequestException("Resource " + entry.getKey() + " not found, specified in path: " + entry.getValue(),
            Outcomes.error(IssueType.PROCESSING,
                "Resource " + entry.getKey() + " not found, specified in path: " + entry.getValue(), entry.getValue()));
      }
    }
    return found;
  }

  /**
   * The resource types an R4 search parameter indexing this path may point at (JPA's "enforce
   * reference target types", on by default in production): null when no search parameter with
   * a target list indexes the path.
   */
  private Set<String> searchTargets(String path) {
    Set<String> allowed = null;
    for (RuntimeSearchParam param : ctx.getResourceDefinition(typeName).getSearchParams()) {
      if (param.getParamType() != RestSearchParameterTypeEnum.REFERENCE) {
        continue;
      }
      for (String part : param.getPath().split("\\|")) {
        if (part.trim().equals(path)) {
          if (param.getTargets().isEmpty()) {
            return null; // a search parameter that may point anywhere indexes this path
          }
          allowed = allowed == null ? new java.util.HashSet<>() : allowed;
          allowed.addAll(param.getTargets());
        }
      }
    }
    return allowed;
  }

  private void collect(Base element, String path, Map<String, String> found, String serverBase) {
    if (element instanceof Reference reference && reference.hasReference()) {
      String target = localTarget(reference.getReference(), serverBase);
      if (target != null) {
        found.putIfAbsent(target, path);
      }
    }
    for (Property property : element.children()) {
      String name = property.getName();
      if (name.equals("contained") || !property.hasValues()) {
        continue;
      }
      String child = path + "." + name.replace("[x]", "");
      for (Base value : property.getValues()) {
        if (value != null) {
          collect(value, child, found, serverBase);
        }
      }
    }
  }

  private String localTarget(String reference, String serverBase) {
    String value = reference;
    if (serverBase != null && value.startsWith(serverBase + "/")) {
      value = value.substring(serverBase.length() + 1);
    }
    if (value.startsWith("#") || value.contains(":")) {
      return null; // contained, urn:, or another server's absolute URL
    }
    IdType id = new IdType(value);
    if (!id.hasResourceType() || !id.hasIdPart()) {
      return null;
    }
    return id.getResourceType() + "/" + id.getIdPart();
  }
}
