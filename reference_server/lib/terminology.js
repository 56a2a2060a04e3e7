'use strict';
/**
 * Required-binding checks against the ValueSets and CodeSystems the server has loaded.
 *
 * Why this exists: Medplum's validator checks a code's syntax but never its membership of the
 * bound ValueSet, whereas HAPI rejects e.g. `Task.status = "bogus"`. Expansion is done locally
 * from `compose` (whole code systems, enumerated concepts, imported value sets, excludes); a
 * ValueSet that cannot be expanded from what is loaded (filters, unknown or fragment code
 * systems) is not checked, so the server never rejects a code it cannot judge.
 */

/** Strips a `|version` suffix from a canonical URL. */
function canonical(url) {
  return typeof url === 'string' ? url.split('|')[0] : url;
}

class Terminology {
  constructor() {
    /** @type {Map<string, object>} */ this.valueSets = new Map();
    /** @type {Map<string, object>} */ this.codeSystems = new Map();
    /** @type {Map<string, Set<string>|null>} expanded "system|code" keys per ValueSet URL */
    this.cache = new Map();
  }

  /** Registers (or replaces) a ValueSet or CodeSystem. */
  add(resource) {
    const map = resource.resourceType === 'ValueSet' ? this.valueSets : this.codeSystems;
    map.set(canonical(resource.url), resource);
    this.cache.clear();
  }

  /** Forgets a ValueSet or CodeSystem (after a DELETE). */
  remove(resource) {
    const map = resource.resourceType === 'ValueSet' ? this.valueSets : this.codeSystems;
    if (map.get(canonical(resource.url)) === resource) map.delete(canonical(resource.url));
    this.cache.clear();
  }

  /**
   * The "system|code" keys of a ValueSet, or null when it is unknown or cannot be expanded.
   * @param {string} url
   * @returns {Set<string>|null}
   */
  expand(url, visiting = new Set()) {
    const key = canonical(url);
    if (this.cache.has(key)) return this.cache.get(key);
    if (visiting.has(key)) return null;
    visiting.add(key);
    const vs = this.valueSets.get(key);
    const codes = vs ? this.expandValueSet(vs, visiting) : null;
    this.cache.set(key, codes);
    return codes;
  }

  expandValueSet(vs, visiting) {
    if (!vs.compose) {
      const contains = vs.expansion?.contains;
      if (!contains || vs.expansion.total > contains.length) return null;
      return new Set(flattenContains(contains));
    }
    const result = new Set();
    for (const include of vs.compose.include ?? []) {
      const part = this.expandInclude(include, visiting);
      if (!part) return null;
      part.forEach((c) => result.add(c));
    }
    for (const exclude of vs.compose.exclude ?? []) {
      const part = this.expandInclude(exclude, visiting);
      if (!part) return null;
      part.forEach((c) => result.delete(c));
    }
    return result;
  }

  /** One include/exclude: the intersection of its system part and its imported value sets. */
  expandInclude(include, visiting) {
    if (include.filter?.length) return null;
    let codes = null;
    if (include.system) {
      if (include.concept?.length) {
        codes = new Set(include.concept.map((c) => `${include.system}|${c.code}`));
      } else {
        const cs = this.codeSystems.get(canonical(include.system));
        if (!cs || cs.content !== 'complete') return null;
        codes = new Set(flattenConcepts(cs.concept ?? []).map((c) => `${include.system}|${c}`));
      }
    }
    for (const url of include.valueSet ?? []) {
      const imported = this.expand(url, visiting);
      if (!imported) return null;
      codes = codes ? new Set([...codes].filter((c) => imported.has(c))) : new Set(imported);
    }
    return codes;
  }

  /**
   * A code of a CodeSystem loaded in full (content `complete`) must be one of its codes.
   * @returns {string|null} a message when it is not, else null
   */
  checkKnownSystem(system, code) {
    const cs = this.codeSystems.get(canonical(system));
    if (!cs || cs.content !== 'complete' || !cs.concept?.length) return null;
    return flattenConcepts(cs.concept).includes(code) ? null : `Unknown code '${system}#${code}'`;
  }

  /**
   * Checks a value of a bindable type against a required ValueSet.
   * @param {string} valueSetUrl
   * @param {string} type FHIR type of the value (code, Coding, CodeableConcept, string, uri)
   * @param {*} value
   * @returns {string|null} a message when the value is not in the ValueSet, else null
   */
  checkRequired(valueSetUrl, type, value) {
    const codes = this.expand(valueSetUrl);
    if (!codes) return null;
    const vs = canonical(valueSetUrl);
    if (type === 'Coding') {
      return codes.has(`${value.system}|${value.code}`)
        ? null
        : `Coding ${value.system ?? '(no system)'}#${value.code} is not in the required value set ${vs}`;
    }
    if (type === 'CodeableConcept') {
      const ok = (value.coding ?? []).some((c) => codes.has(`${c.system}|${c.code}`));
      return ok ? null : `None of the codings is in the required value set ${vs}`;
    }
    if (typeof value !== 'string') return null;
    const bare = new Set([...codes].map((c) => c.slice(c.lastIndexOf('|') + 1)));
    return bare.has(value) ? null : `The value '${value}' is not in the required value set ${vs}`;
  }
}

function flattenConcepts(concepts) {
  return concepts.flatMap((c) => [c.code, ...flattenConcepts(c.concept ?? [])]);
}

function flattenContains(contains) {
  return contains.flatMap((c) => [
    ...(c.code ? [`${c.system}|${c.code}`] : []),
    ...flattenContains(c.contains ?? []),
  ]);
}

module.exports = { Terminology, canonical };
