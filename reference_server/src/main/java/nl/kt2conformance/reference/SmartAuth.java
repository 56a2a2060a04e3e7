package nl.kt2conformance.reference;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWSAlgorithm;
import com.nimbusds.jose.JWSHeader;
import com.nimbusds.jose.JWSVerifier;
import com.nimbusds.jose.crypto.ECDSAVerifier;
import com.nimbusds.jose.crypto.RSASSASigner;
import com.nimbusds.jose.crypto.RSASSAVerifier;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.KeyUse;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jwt.JWTClaimsSet;
import com.nimbusds.jwt.SignedJWT;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.PublicKey;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.X509EncodedKeySpec;
import java.text.ParseException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;

/**
 * SMART Backend Services like the production Koppeltaal auth service: a client_credentials token
 * endpoint that takes a private_key_jwt client assertion (RS512 by default, RS384 and ES384 too;
 * iss = sub = the registered client id, aud = the token URL, exp at most 5 minutes ahead, a jti
 * used once), and RS512-signed JWT access tokens checked against this server's own key (published
 * as JWKS). The access token's azp is the client id, which is also the id of the client's Device.
 */
final class SmartAuth extends HttpServlet implements Layers.Authenticator {

  static final long MAX_ASSERTION_LIFETIME_S = 300;
  private static final Set<JWSAlgorithm> CLIENT_ALGORITHMS = Set.of(JWSAlgorithm.RS512, JWSAlgorithm.RS384, JWSAlgorithm.ES384);
  private static final String ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
  private static final String AUDIENCE = "fhir-server";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final String clientId;
  private final List<JWK> clientKeys;
  private final long tokenLifetimeS;
  private final RSAKey signingKey;
  private final Map<String, Long> usedJti = new ConcurrentHashMap<>();
  private volatile String origin = "";

  SmartAuth(String clientId, Path clientKeyFile, long tokenLifetimeS) throws IOException {
    this.clientId = clientId;
    this.clientKeys = readPublicKeys(clientKeyFile);
    this.tokenLifetimeS = tokenLifetimeS;
    try {
      KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
      generator.initialize(2048);
      KeyPair pair = generator.generateKeyPair();
      signingKey = new RSAKey.Builder((RSAPublicKey) pair.getPublic())
          .privateKey(pair.getPrivate()).keyUse(KeyUse.SIGNATURE).algorithm(JWSAlgorithm.RS512)
          .keyID(UUID.randomUUID().toString()).build();
    } catch (java.security.GeneralSecurityException e) {
      throw new IllegalStateException("cannot create the token signing key: " + e.getMessage(), e);
    }
  }

  /** http://HOST:PORT, known once the server listens. */
  void setOrigin(String origin) {
    this.origin = origin;
  }

  String tokenUrl() {
    return origin + "/oauth2/token";
  }

  @Override
  public String clientFor(String bearerToken) {
    try {
      SignedJWT jwt = SignedJWT.parse(bearerToken);
      if (!JWSAlgorithm.RS512.equals(jwt.getHeader().getAlgorithm())
          || !jwt.verify(new RSASSAVerifier(signingKey.toRSAPublicKey()))) {
        return null;
      }
      JWTClaimsSet claims = jwt.getJWTClaimsSet();
      Date exp = claims.getExpirationTime();
      if (exp == null || !exp.toInstant().isAfter(Instant.now()) || !origin.equals(claims.getIssuer())
          || !claims.getAudience().contains(AUDIENCE) || !clientId.equals(claims.getStringClaim("azp"))) {
        return null;
      }
      return clientId;
    } catch (ParseException | JOSEException e) {
      return null;
    }
  }

  @Override
  protected void doGet(HttpServletRequest request, HttpServletResponse response) throws IOException {
    String path = request.getRequestURI();
    if (path.endsWith("/.well-known/smart-configuration")) {
      Map<String, Object> config = new LinkedHashMap<>();
      config.put("issuer", origin);
      config.put("jwks_uri", origin + "/.well-known/jwks.json");
      config.put("token_endpoint", tokenUrl());
      config.put("grant_types_supported", List.of("client_credentials"));
      config.put("token_endpoint_auth_methods_supported", List.of("private_key_jwt"));
      config.put("token_endpoint_auth_signing_alg_values_supported", List.of("RS512", "RS384", "ES384"));
      config.put("scopes_supported", List.of("system/*.cruds"));
      config.put("capabilities", List.of("client-confidential-asymmetric", "permission-v2"));
      json(response, 200, config);
    } else if (path.endsWith("/.well-known/jwks.json")) {
      response.setStatus(200);
      response.setContentType("application/json");
      response.getOutputStream().write(new JWKSet(signingKey.toPublicJWK()).toString().getBytes(StandardCharsets.UTF_8));
    } else {
      json(response, 404, Map.of("error", "not_found"));
    }
  }

  @Override
  protected void doPost(HttpServletRequest request, HttpServletResponse response) throws IOException {
    if (!request.getRequestURI().endsWith("/oauth2/token")) {
      json(response, 404, Map.of("error", "not_found"));
      return;
    }
    String grantType = request.getParameter("grant_type");
    String assertionType = request.getParameter("client_assertion_type");
    String assertion = request.getParameter("client_assertion");
    if (!"client_credentials".equals(grantType)) {
      json(response, 400, error("unsupported_grant_type", "grant_type must be client_credentials"));
      return;
    }
    if (!ASSERTION_TYPE.equals(assertionType) || assertion == null || assertion.isBlank()) {
      json(response, 400, error("invalid_request", "a client_assertion of type " + ASSERTION_TYPE + " is required"));
      return;
    }
    String refusal = checkAssertion(assertion);
    if (refusal != null) {
      json(response, 401, error("invalid_client", refusal));
      return;
    }
    String scope = request.getParameter("scope") == null ? "system/*.cruds" : request.getParameter("scope");
    Instant now = Instant.now();
    JWTClaimsSet claims = new JWTClaimsSet.Builder()
        .issuer(origin).audience(AUDIENCE).subject(clientId).claim("azp", clientId).claim("scope", scope)
        .issueTime(Date.from(now)).expirationTime(Date.from(now.plusSeconds(tokenLifetimeS)))
        .jwtID(UUID.randomUUID().toString()).build();
    SignedJWT token = new SignedJWT(new JWSHeader.Builder(JWSAlgorithm.RS512).keyID(signingKey.getKeyID()).build(), claims);
    try {
      token.sign(new RSASSASigner(signingKey));
    } catch (JOSEException e) {
      json(response, 500, error("server_error", "cannot sign the access token"));
      return;
    }
    Map<String, Object> answer = new LinkedHashMap<>();
    answer.put("access_token", token.serialize());
    answer.put("token_type", "Bearer");
    answer.put("expires_in", tokenLifetimeS);
    answer.put("scope", scope);
    response.setHeader("Cache-Control", "no-store");
    json(response, 200, answer);
  }

  /** Null when the client assertion is acceptable, else why not (never the assertion itself). */
  private String checkAssertion(String assertion) {
    SignedJWT jwt;
    JWTClaimsSet claims;
    try {
      jwt = SignedJWT.parse(assertion);
      claims = jwt.getJWTClaimsSet();
    } catch (ParseException e) {
      return "the client assertion is not a signed JWT";
    }
    JWSAlgorithm alg = jwt.getHeader().getAlgorithm();
    if (!CLIENT_ALGORITHMS.contains(alg)) {
      return "unsupported assertion algorithm " + alg + ": use RS512, RS384 or ES384";
    }
    if (!clientId.equals(claims.getIssuer()) || !clientId.equals(claims.getSubject())) {
      return "unknown client: iss and sub must be the registered client id";
    }
    if (claims.getAudience() == null || !claims.getAudience().equals(List.of(tokenUrl()))) {
      return "aud must be the token endpoint " + tokenUrl();
    }
    if (!verified(jwt)) {
      return "the client assertion's signature does not verify with the client's registered key";
    }
    Instant now = Instant.now();
    Date exp = claims.getExpirationTime();
    if (exp == null) {
      return "exp is required";
    }
    if (!exp.toInstant().isAfter(now.minusSeconds(5))) {
      return "the client assertion has expired";
    }
    if (exp.toInstant().isAfter(now.plusSeconds(MAX_ASSERTION_LIFETIME_S + 5))) {
      return "exp may be at most 5 minutes in the future";
    }
    String jti = claims.getJWTID();
    if (jti == null || jti.isBlank()) {
      return "jti is required";
    }
    usedJti.entrySet().removeIf(entry -> entry.getValue() < now.getEpochSecond());
    if (usedJti.putIfAbsent(jti, exp.toInstant().getEpochSecond() + 5) != null) {
      return "this jti was used before: a client assertion may be used once";
    }
    return null;
  }

  private boolean verified(SignedJWT jwt) {
    for (JWK key : clientKeys) {
      try {
        JWSVerifier verifier;
        if (key instanceof RSAKey rsa && jwt.getHeader().getAlgorithm().getName().startsWith("RS")) {
          verifier = new RSASSAVerifier(rsa);
        } else if (key instanceof ECKey ec && jwt.getHeader().getAlgorithm().getName().startsWith("ES")) {
          verifier = new ECDSAVerifier(ec);
        } else {
          continue;
        }
        if (jwt.verify(verifier)) {
          return true;
        }
      } catch (JOSEException e) {
        // try the next key
      }
    }
    return false;
  }

  private static Map<String, Object> error(String code, String description) {
    Map<String, Object> body = new LinkedHashMap<>();
    body.put("error", code);
    body.put("error_description", description);
    return body;
  }

  private static void json(HttpServletResponse response, int status, Object body) throws IOException {
    response.setStatus(status);
    response.setContentType("application/json");
    response.getOutputStream().write(JSON.writeValueAsBytes(body));
  }

  /** The client's public keys: a JWKS file, or a PEM public key (RSA or EC). */
  static List<JWK> readPublicKeys(Path file) throws IOException {
    String text = Files.readString(file, StandardCharsets.UTF_8).trim();
    try {
      if (text.startsWith("{")) {
        List<JWK> keys = new ArrayList<>();
        for (JWK key : JWKSet.parse(text).getKeys()) {
          keys.add(key.toPublicJWK());
        }
        if (keys.isEmpty()) {
          throw new IllegalArgumentException("no keys in the JWKS " + file);
        }
        return keys;
      }
      if (!text.contains("-----BEGIN PUBLIC KEY-----")) {
        throw new IllegalArgumentException("not a PEM public key or a JWKS: " + file);
      }
      String base64 = text.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
      X509EncodedKeySpec spec = new X509EncodedKeySpec(Base64.getDecoder().decode(base64));
      PublicKey key;
      try {
        key = KeyFactory.getInstance("RSA").generatePublic(spec);
        return List.of(new RSAKey.Builder((RSAPublicKey) key).build());
      } catch (java.security.spec.InvalidKeySpecException notRsa) {
        key = KeyFactory.getInstance("EC").generatePublic(spec);
        ECPublicKey ec = (ECPublicKey) key;
        return List.of(new ECKey.Builder(com.nimbusds.jose.jwk.Curve.forECParameterSpec(ec.getParams()), ec).build());
      }
    } catch (ParseException | java.security.GeneralSecurityException | IllegalArgumentException e) {
      throw new IllegalArgumentException("cannot read the client key " + file + ": " + e.getMessage());
    }
  }
}
