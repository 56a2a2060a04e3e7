package nl.kt2conformance.reference;

import ca.uhn.fhir.context.FhirContext;
import java.io.IOException;
import java.net.BindException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

/**
 * Embedded reference Koppeltaal 2.0 server for kt2conformance.
 *
 * <pre>
 * java -jar kt2-reference-server.jar [--port N] [--host H] [--profiles DIR]
 *      [--token T | --smart-client-id ID --smart-client-key PEM|JWKS [--token-lifetime S]]
 * </pre>
 *
 * Prints exactly {@code Serving FHIR R4 at http://HOST:PORT/fhir} as its first stdout line once it
 * listens and the validator is warm (the validator's first use loads R4 core: seconds; it runs
 * while Jetty starts); port 0 picks a free port and prints the real one. SIGINT/SIGTERM stop it
 * with exit 0.
 * Start-up problems end with one line on stderr: exit 2 for bad options, 1 for the rest.
 */
public final class Main {
  private static final Set<String> OPTIONS = Set.of(
      "--port", "--host", "--profiles", "--token", "--smart-client-id", "--smart-client-key", "--token-lifetime");
  /** The client id (and Device id) of requests made with the static token or without a token. */
  static final String STATIC_CLIENT_ID = "kt2conformance-client";

  private Main() {}

  public static void main(String[] args) {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
    System.setProperty("org.slf4j.simpleLogger.log.org.eclipse.jetty", "warn");
    System.setProperty("org.slf4j.simpleLogger.log.ca.uhn.fhir", "error"); // refusals are answers, not server trouble
    installSignalHandlers();
    Map<String, String> options = parse(args);
    int port = integer(options.getOrDefault("--port", "8080"), "--port", 0, 65535);
    String host = options.getOrDefault("--host", "127.0.0.1");
    Path profiles = Path.of(options.getOrDefault("--profiles", defaultProfiles()));
    if (!Files.exists(profiles)) {
      die("profile folder not found: " + profiles, 2);
    }
    if (Files.isRegularFile(profiles)) {
      profiles = profiles.toAbsolutePath().getParent(); // a file brings its folder: extensions and ValueSets sit beside it
    }
    String token = options.get("--token");
    String smartClient = options.get("--smart-client-id");
    String smartKey = options.get("--smart-client-key");
    if (token != null && (token.isBlank() || token.matches(".*\\s.*"))) {
      die("--token must be non-empty without spaces", 2);
    }
    if (token != null && smartClient != null) {
      die("use either --token or the SMART options, not both", 2);
    }
    if ((smartClient == null) != (smartKey == null)) {
      die("SMART mode needs both --smart-client-id and --smart-client-key", 2);
    }
    if (smartClient != null && !smartClient.matches("[A-Za-z0-9\\-.]{1,64}")) {
      die("--smart-client-id must be a FHIR id (letters, digits, '-', '.'; at most 64): it is also the client's Device id", 2);
    }
    long lifetime = integer(options.getOrDefault("--token-lifetime", "300"), "--token-lifetime", 1, 86400);

    try {
      FhirContext ctx = FhirContext.forR4Cached();
      timing("FHIR context");
      Validation validation = new Validation(ctx, profiles);
      timing("validator set up");
      SmartAuth smart = null;
      Layers.Authenticator authenticator = null;
      String clientId = STATIC_CLIENT_ID;
      if (smartClient != null) {
        smart = new SmartAuth(smartClient, Path.of(smartKey), lifetime);
        authenticator = smart;
        clientId = smartClient;
      } else if (token != null) {
        authenticator = bearer -> java.security.MessageDigest.isEqual(
            bearer.getBytes(java.nio.charset.StandardCharsets.UTF_8), token.getBytes(java.nio.charset.StandardCharsets.UTF_8))
            ? STATIC_CLIENT_ID : null;
      }
      Thread warm = new Thread(() -> {
        validation.warm();
        timing("validator warm");
      }, "validator-warm-up");
      warm.setDaemon(true);
      warm.start();

      Server server = new Server();
      ServerConnector connector = new ServerConnector(server);
      connector.setHost(host);
      connector.setPort(port);
      server.addConnector(connector);
      ServletContextHandler context = new ServletContextHandler();
      context.setContextPath("/");
      ServletHolder fhir = new ServletHolder(new KoppeltaalServer(ctx, validation, authenticator, smart, clientId));
      fhir.setInitOrder(1); // initialise HAPI's RestfulServer before listening, not on the first request
      context.addServlet(fhir, "/fhir/*");
      if (smart != null) {
        ServletHolder auth = new ServletHolder(smart);
        context.addServlet(auth, "/oauth2/*");
        context.addServlet(auth, "/.well-known/*");
        context.addServlet(auth, "/fhir/.well-known/*");
      }
      server.setHandler(context);
      server.setStopTimeout(2000);
      try {
        server.start();
      } catch (IOException e) {
        if (e instanceof BindException || e.getCause() instanceof BindException) {
          die("port " + port + " is in use: choose another --port", 1);
        }
        throw e;
      }
      String shownHost = host.contains(":") ? "[" + host + "]" : host;
      String origin = "http://" + shownHost + ":" + connector.getLocalPort();
      if (smart != null) {
        smart.setOrigin(origin);
      }
      running = server;
      timing("listening");
      warm.join(); // "Serving" means ready: the first request does not wait for the validator
      System.out.println("Serving FHIR R4 at " + origin + "/fhir");
      System.out.flush();
      server.join();
    } catch (IllegalArgumentException e) {
      die(e.getMessage(), 2);
    } catch (Exception e) {
      Throwable root = e;
      while (root.getCause() != null) {
        root = root.getCause();
      }
      if (root instanceof BindException) {
        die("cannot listen on " + host + ":" + port + ": " + root.getMessage(), 1);
      }
      die(e.getClass().getSimpleName() + ": " + e.getMessage(), 1);
    }
  }

  private static volatile Server running;

  /** SIGINT and SIGTERM stop the server and end the JVM with exit 0, also during start-up. */
  private static void installSignalHandlers() {
    sun.misc.SignalHandler stop = signal -> {
      Thread stopper = new Thread(() -> {
        Server server = running;
        if (server != null) {
          try {
            server.stop();
          } catch (Exception ignored) {
            // stopping anyway
          }
        }
        Runtime.getRuntime().halt(0);
      }, "stop");
      stopper.setDaemon(true);
      stopper.start();
    };
    sun.misc.Signal.handle(new sun.misc.Signal("INT"), stop);
    sun.misc.Signal.handle(new sun.misc.Signal("TERM"), stop);
  }

  /** profiles/koppeltaalv2.00-0.16.2 of the repository this jar was built in (reference_server/target/). */
  private static String defaultProfiles() {
    try {
      Path jar = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI());
      Path repo = jar.getParent().getParent().getParent();
      return repo.resolve("profiles").resolve("koppeltaalv2.00-0.16.2").toString();
    } catch (Exception e) {
      return "profiles/koppeltaalv2.00-0.16.2";
    }
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      String name = args[i];
      String value = null;
      if (name.startsWith("--") && name.contains("=")) {
        value = name.substring(name.indexOf('=') + 1);
        name = name.substring(0, name.indexOf('='));
      }
      if (!OPTIONS.contains(name)) {
        die("unknown option " + name + " (options: --port --host --profiles --token --smart-client-id "
            + "--smart-client-key --token-lifetime)", 2);
      }
      if (value == null) {
        if (i + 1 >= args.length) {
          die("option " + name + " needs a value", 2);
        }
        value = args[++i];
      }
      options.put(name, value);
    }
    return options;
  }

  private static int integer(String text, String option, int min, int max) {
    try {
      int value = Integer.parseInt(text);
      if (value >= min && value <= max) {
        return value;
      }
    } catch (NumberFormatException ignored) {
      // reported below
    }
    die("invalid " + option + " " + text + ": use " + min + "-" + max, 2);
    return -1;
  }

  private static final long STARTED = System.nanoTime();

  /** With KT2_REFERENCE_TIMING set, start-up milestones go to stderr (for the benchmarks). */
  static void timing(String milestone) {
    if (System.getenv("KT2_REFERENCE_TIMING") != null) {
      System.err.printf("timing: %s %.0f ms since JVM main%n", milestone, (System.nanoTime() - STARTED) / 1e6);
    }
  }

  static void die(String message, int code) {
    System.err.println("reference server: " + message);
    System.err.flush();
    Runtime.getRuntime().halt(code);
  }
}
