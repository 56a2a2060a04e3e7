package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.parser.LenientErrorHandler;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.IValidationContext;
import ca.uhn.fhir.validation.ValidationOptions;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.r4.model.ValueSet;
import org.hl7.fhir.utilities.validation.ValidationMessage;

/**
 * HAPI's FhirInstanceValidator (the HL7 validator core) set up as the production server's JPA
 * starter sets it up, but fed offline: R4 core from hapi-fhir-validation-resources-r4, the KT2
 * definitions from a package folder, terminology only from what is loaded (no terminology or
 * package server, so nothing goes to the network). The support chain follows HAPI's
 * JpaValidationSupportChain in order, with the JPA-stored package replaced by the folder.
 */
final class Validation {

  private final FhirContext ctx;
  private final FhirValidator validator;
  private final Set<String> loadedProfiles = new TreeSet<>();
  private final Set<String> offlineProfiles = new TreeSet<>();

  Validation(FhirContext ctx, Path profilesDir) throws IOException {
    this.ctx = ctx;
    PrePopulatedValidationSupport kt2 = new PrePopulatedValidationSupport(ctx);
    int loaded = load(kt2, profilesDir);
    if (loaded == 0) {
      throw new IllegalArgumentException(
          "no StructureDefinition, ValueSet or CodeSystem found in " + profilesDir);
    }
    for (String profile : Koppeltaal.REQUIRED_PROFILE.values()) {
      if (!loadedProfiles.contains(profile)) {
        offlineProfiles.add(profile);
      }
    }
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(ctx),
        kt2,
        new SnapshotGeneratingValidationSupport(ctx),
        new InMemoryTerminologyServerValidationSupport(ctx),
        new CommonCodeSystemsTerminologyService(ctx),
        new UnknownCodeSystemWarningValidationSupport(ctx));
    OfflineInstanceValidator module = new OfflineInstanceValidator(chain, offlineProfiles);
    module.setBestPracticeWarningLevel(org.hl7.fhir.r5.utils.validation.constants.BestPracticeWarningLevel.Warning);
    validator = ctx.newValidator();
    validator.setValidateAgainstStandardSchema(false);
    validator.setValidateAgainstStandardSchematron(false);
    validator.registerValidatorModule(module);
  }

  FhirValidator validator() {
    return validator;
  }

  /** Validates a request body as sent (JSON or XML text), optionally against one more profile. */
  ValidationResult validate(String body, String profile) {
    ValidationOptions options = new ValidationOptions();
    if (profile != null && !profile.isBlank()) {
      options.addProfile(profile);
    }
    return validator.validateWithResult(body, options);
  }

  /** KT2 profiles the production server validates against but this server cannot (not in the folder). */
  Set<String> offlineProfiles() {
    return offlineProfiles;
  }

  Set<String> loadedProfiles() {
    return loadedProfiles;
  }

  /** The first validation loads R4 core and builds the validator's context: do it before any request. */
  void warm() {
    validate("{\"resourceType\":\"Task\",\"meta\":{\"profile\":[\"http://koppeltaal.nl/fhir/StructureDefinition/KT2Task\"]},"
        + "\"status\":\"ready\",\"intent\":\"order\",\"for\":{\"reference\":\"Patient/p\"},\"owner\":{\"reference\":\"Practitioner/p\"},"
        + "\"authoredOn\":\"2024-01-01T10:00:00Z\"}", null);
  }

  private int load(PrePopulatedValidationSupport support, Path dir) throws IOException {
    IParser parser = ctx.newJsonParser().setParserErrorHandler(new LenientErrorHandler(false));
    List<Path> files = new ArrayList<>();
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.filter(p -> p.toString().endsWith(".json") && Files.isRegularFile(p)).sorted().forEach(files::add);
    }
    int count = 0;
    for (Path file : files) {
      IBaseResource resource;
      try {
        resource = parser.parseResource(Files.readString(file, StandardCharsets.UTF_8));
      } catch (RuntimeException notFhir) {
        continue; // package.json, .index.json and other non-resources
      }
      if (resource instanceof Bundle bundle) {
        for (Bundle.BundleEntryComponent entry : bundle.getEntry()) {
          count += add(support, entry.getResource());
        }
      } else {
        count += add(support, resource);
      }
    }
    return count;
  }

  private int add(PrePopulatedValidationSupport support, IBaseResource resource) {
    if (resource instanceof StructureDefinition sd) {
      support.addStructureDefinition(sd);
      loadedProfiles.add(sd.getUrl());
      return 1;
    }
    if (resource instanceof ValueSet vs) {
      support.addValueSet(vs);
      return 1;
    }
    if (resource instanceof CodeSystem cs) {
      support.addCodeSystem(cs);
      return 1;
    }
    return 0;
  }

  /**
   * The instance validator, except that a declared KT2 profile missing from the profile folder
   * (given another --profiles) is reported as a warning instead of an error: the resource is then
   * checked against R4 only, and its meta.profile claim is still required.
   */
  static final class OfflineInstanceValidator extends FhirInstanceValidator {
    private final Set<String> offline;

    OfflineInstanceValidator(ValidationSupportChain chain, Set<String> offline) {
      super(chain);
      this.offline = Set.copyOf(offline);
    }

    @Override
    protected List<ValidationMessage> validate(IValidationContext<?> context) {
      List<ValidationMessage> messages = super.validate(context);
      for (ValidationMessage message : messages) {
        if (message.getLevel() == ValidationMessage.IssueSeverity.ERROR && namesOfflineProfile(message.getMessage())) {
          message.setLevel(ValidationMessage.IssueSeverity.WARNING);
          message.setMessage(message.getMessage() + " (not available offline to this reference server)");
        }
      }
      return messages;
    }

    private boolean namesOfflineProfile(String text) {
      if (text == null) {
        return false;
      }
      for (String url : offline) {
        if (text.contains(url)) {
          return true;
        }
      }
      return false;
    }
  }
}
