package nl.kt2conformance.reference;

import java.util.Map;
import java.util.Set;

/** The Koppeltaal facts the server's layers use, each in one place. */
final class Koppeltaal {
  private Koppeltaal() {}

  static final String RESOURCE_ORIGIN = "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin";
  static final String TASK_CODE_SYSTEM = "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code";
  /** Task codes that make a Task a sub-task, which must name its parent in partOf. */
  static final Set<String> SUBTASK_CODES = Set.of("view");
  static final String DEVICE_PROFILE = "http://koppeltaal.nl/fhir/StructureDefinition/KT2Device";
  /** Identifier system of the Device a registered client is mapped to. */
  static final String CLIENT_ID_SYSTEM = "http://vzvz.nl/fhir/NamingSystem/koppeltaal-client-id";

  /**
   * The production server's repository rule: a resource of each of these types must declare (at
   * least) its KT2 profile in meta.profile, else 412. The same types are the ones this server
   * stores.
   */
  static final Map<String, String> REQUIRED_PROFILE = Map.ofEntries(
      Map.entry("ActivityDefinition", "http://koppeltaal.nl/fhir/StructureDefinition/KT2ActivityDefinition"),
      Map.entry("AuditEvent", "http://koppeltaal.nl/fhir/StructureDefinition/KT2AuditEvent"),
      Map.entry("CareTeam", "http://koppeltaal.nl/fhir/StructureDefinition/KT2CareTeam"),
      Map.entry("Device", DEVICE_PROFILE),
      Map.entry("Endpoint", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Endpoint"),
      Map.entry("Organization", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Organization"),
      Map.entry("Patient", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Patient"),
      Map.entry("Practitioner", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Practitioner"),
      Map.entry("RelatedPerson", "http://koppeltaal.nl/fhir/StructureDefinition/KT2RelatedPerson"),
      Map.entry("Subscription", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Subscription"),
      Map.entry("Task", "http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"));

  /** Reference paths whose target may be deleted anyway (production exempts AuditEvent.entity.what). */
  static final Set<String> DELETE_EXEMPT_PATHS = Set.of("AuditEvent.entity.what");
}
