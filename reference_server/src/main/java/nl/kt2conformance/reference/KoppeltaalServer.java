package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Interceptor;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.FifoMemoryPagingProvider;
import ca.uhn.fhir.rest.server.RestfulServer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.hl7.fhir.instance.model.api.IBaseConformance;
import org.hl7.fhir.r4.model.CapabilityStatement;
import org.hl7.fhir.r4.model.Device;
import org.hl7.fhir.r4.model.Extension;
import org.hl7.fhir.r4.model.UriType;

/**
 * The FHIR endpoint: a plain HAPI RestfulServer with one in-memory provider per Koppeltaal type
 * and the production server's layers registered in production's order.
 */
final class KoppeltaalServer extends RestfulServer {
  private static final long serialVersionUID = 1L;

  private final transient Validation validation;
  private final transient Layers.Authenticator authenticator;
  private final transient SmartAuth smart;
  private final String clientId;
  private final transient Store store = new Store();

  KoppeltaalServer(FhirContext ctx, Validation validation, Layers.Authenticator authenticator, SmartAuth smart,
      String clientId) {
    super(ctx);
    this.validation = validation;
    this.authenticator = authenticator;
    this.smart = smart;
    this.clientId = clientId;
  }

  @Override
  protected void initialize() {
    FhirContext ctx = getFhirContext();
    StoredResources.Registry registry = new StoredResources.Registry(ctx, store);
    List<StoredResources> providers = new ArrayList<>();
    for (String type : new TreeMap<>(Koppeltaal.REQUIRED_PROFILE).keySet()) {
      providers.add(new StoredResources(ctx, type, store, registry, validation));
    }
    setResourceProviders(new ArrayList<>(providers));
    setDefaultResponseEncoding(EncodingEnum.JSON);
    setDefaultPrettyPrint(false);
    setPagingProvider(new FifoMemoryPagingProvider(50));

    registerInterceptor(new Layers.MediaTypes());
    registerInterceptor(new Layers.JsonSyntax());
    registerInterceptor(new Layers.BearerToken(authenticator, clientId));
    registerInterceptor(new ValidateOperation(ctx, validation));
    registerInterceptor(new Layers.ResourceOrigin(registry));
    registerInterceptor(new Layers.ProfileValidation(validation));
    registerInterceptor(new Layers.SubTask());
    registerInterceptor(new Capability());

    seedClientDevice(providers);
  }

  /** The requesting client's Device, which every created resource's resource-origin names. */
  private void seedClientDevice(List<StoredResources> providers) {
    Device device = new Device();
    device.getMeta().addProfile(Koppeltaal.DEVICE_PROFILE);
    device.addIdentifier().setSystem(Koppeltaal.CLIENT_ID_SYSTEM).setValue(clientId);
    device.setStatus(Device.FHIRDeviceStatus.ACTIVE);
    device.addDeviceName().setName("kt2conformance client " + clientId)
        .setType(Device.DeviceNameType.USERFRIENDLYNAME);
    for (StoredResources provider : providers) {
      if (provider.getResourceType() == Device.class) {
        provider.save(device, clientId, Map.of());
      }
    }
  }

  /** Says what this server is, what it cannot check offline, and (SMART mode) where tokens come from. */
  @Interceptor
  final class Capability {
    @Hook(Pointcut.SERVER_CAPABILITY_STATEMENT_GENERATED)
    public void customize(IBaseConformance statement) {
      CapabilityStatement cs = (CapabilityStatement) statement;
      cs.getSoftware().setName("kt2conformance reference Koppeltaal server (HAPI FHIR 8.2.0)");
      cs.addImplementationGuide("http://koppeltaal.nl/fhir/ImplementationGuide/koppeltaalv2.00|0.16.2");
      StringBuilder text = new StringBuilder(
          "Embedded reference server of kt2conformance: HAPI FHIR's RestfulServer with the production Koppeltaal "
              + "server's layers and HAPI's FhirInstanceValidator, fed offline. Validated against: "
              + String.join(", ", validation.loadedProfiles()) + " and FHIR R4.");
      text.append(" Profiles built on the Dutch nl-core profiles are validated by their own snapshots only: the nl-core"
          + " packages (their extensions, ValueSets and base profiles) are not available offline, so nl-core extensions"
          + " count as unknown (allowed) and bindings to nl-core ValueSets are not checked.");
      if (!validation.offlineProfiles().isEmpty()) {
        text.append(" Not validated (not in the profile folder; their meta.profile is still required): ").append(String.join(", ", validation.offlineProfiles())).append('.');
      }
      cs.setDescription(text.toString());
      if (smart != null && !cs.getRest().isEmpty()) {
        Extension uris = new Extension("http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
        uris.addExtension("token", new UriType(smart.tokenUrl()));
        cs.getRestFirstRep().getSecurity().addExtension(uris);
        cs.getRestFirstRep().getSecurity().addService().addCoding()
            .setSystem("http://terminology.hl7.org/CodeSystem/restful-security-service").setCode("SMART-on-FHIR");
      }
    }
  }
}
