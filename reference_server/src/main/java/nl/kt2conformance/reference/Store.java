package nl.kt2conformance.reference;

import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * In-memory, versioned storage for every resource type the server serves, plus the index of who
 * references whom that referential integrity needs (a write may only point at live resources; a
 * resource still pointed at may not be deleted). Resources are kept as their encoded JSON so a
 * stored version can never be changed by a later request. One lock guards everything: a write
 * does its slow work (parsing, validation) before it takes the lock.
 */
final class Store {

  /** One version of a resource; json is null for a deletion. */
  record Version(long number, Instant lastUpdated, String json) {
    boolean deleted() {
      return json == null;
    }
  }

  /** Where a stored resource refers to another: the referring resource and the element path. */
  record Referrer(String source, String path) {}

  private final Map<String, List<Version>> versions = new LinkedHashMap<>();
  /** source "Type/id" → the targets its current version refers to. */
  private final Map<String, Set<String>> outgoing = new HashMap<>();
  /** target "Type/id" → (source "Type/id" → path of the first reference found). */
  private final Map<String, Map<String, String>> referrers = new HashMap<>();

  /** The versions of "Type/id", oldest first; empty when never stored. */
  synchronized List<Version> history(String key) {
    return List.copyOf(versions.getOrDefault(key, List.of()));
  }

  synchronized Version current(String key) {
    List<Version> list = versions.get(key);
    return list == null ? null : list.get(list.size() - 1);
  }

  synchronized boolean isLive(String key) {
    Version version = current(key);
    return version != null && !version.deleted();
  }

  /** Appends a version; outgoing references ("Type/id" → path) replace the previous version's. */
  synchronized Version put(String key, String json, Map<String, String> references) {
    List<Version> list = versions.computeIfAbsent(key, k -> new ArrayList<>());
    Version version = new Version(list.size() + 1L, Instant.now(), json);
    list.add(version);
    dropReferencesFrom(key);
    references.forEach((target, path) -> referrers.computeIfAbsent(target, t -> new LinkedHashMap<>()).put(key, path));
    outgoing.put(key, Set.copyOf(references.keySet()));
    return version;
  }

  /** Marks "Type/id" deleted (a new version without content) and forgets its references. */
  synchronized Version delete(String key) {
    return put(key, null, Map.of());
  }

  /** A live resource that still refers to key, ignoring references from paths in exempt. */
  synchronized Referrer firstReferrer(String key, Set<String> exemptPaths) {
    for (Map.Entry<String, String> entry : referrers.getOrDefault(key, Map.of()).entrySet()) {
      if (!exemptPaths.contains(entry.getValue()) && isLive(entry.getKey())) {
        return new Referrer(entry.getKey(), entry.getValue());
      }
    }
    return null;
  }

  /** The current JSON of every live resource of a type, in creation order. */
  synchronized List<String> all(String type) {
    List<String> result = new ArrayList<>();
    String prefix = type + "/";
    for (Map.Entry<String, List<Version>> entry : versions.entrySet()) {
      if (entry.getKey().startsWith(prefix)) {
        Version version = entry.getValue().get(entry.getValue().size() - 1);
        if (!version.deleted()) {
          result.add(version.json());
        }
      }
    }
    return result;
  }

  private void dropReferencesFrom(String key) {
    for (String target : outgoing.getOrDefault(key, Set.of())) {
      Map<String, String> sources = referrers.get(target);
      if (sources != null) {
        sources.remove(key);
      }
    }
    outgoing.remove(key);
  }
}
