import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.IParser;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.Resource;
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;

/** Writes HL7's R4 (4.0.1) definitions shipped in hapi-fhir-validation-resources-r4 (XML bundles) as
 * the resource files of a FHIR NPM package folder, one JSON file per resource, for SUSHI's offline cache. */
public class R4CorePackage {
  public static void main(String[] args) throws Exception {
    Path out = Paths.get(args[0]);
    Files.createDirectories(out);
    FhirContext ctx = FhirContext.forR4();
    IParser xml = ctx.newXmlParser();
    IParser json = ctx.newJsonParser();
    String[] bundles = {
      "org/hl7/fhir/r4/model/profile/profiles-types.xml",
      "org/hl7/fhir/r4/model/profile/profiles-resources.xml",
      "org/hl7/fhir/r4/model/profile/profiles-others.xml",
      "org/hl7/fhir/r4/model/extension/extension-definitions.xml",
      "org/hl7/fhir/r4/model/valueset/valuesets.xml",
      "org/hl7/fhir/r4/model/valueset/v3-codesystems.xml",
      "org/hl7/fhir/r4/model/valueset/v2-tables.xml",
      "org/hl7/fhir/r4/model/sp/search-parameters.json",
    };
    int n = 0;
    for (String name : bundles) {
      try (InputStream in = R4CorePackage.class.getClassLoader().getResourceAsStream(name)) {
        Reader r = new InputStreamReader(in, StandardCharsets.UTF_8);
        Bundle b = name.endsWith(".json") ? json.parseResource(Bundle.class, r) : xml.parseResource(Bundle.class, r);
        for (Bundle.BundleEntryComponent e : b.getEntry()) {
          Resource res = e.getResource();
          if (res == null) continue;
          String type = res.fhirType();
          String id = res.getIdElement().getIdPart();
          Path f = out.resolve(type + "-" + id + ".json");
          Files.writeString(f, json.encodeResourceToString(res));
          n++;
        }
      }
    }
    System.out.println(n + " resources");
  }
}
