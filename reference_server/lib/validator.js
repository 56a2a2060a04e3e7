'use strict';
/**
 * Validation of a resource against the R4 base and the profiles it declares.
 *
 * Medplum's validator does structure, cardinality, types, fixed/pattern values and most
 * invariants. It misses what HAPI enforces, so this module adds, for every element it visits
 * with Medplum's own typed crawler:
 * - required bindings (membership of the bound ValueSet, see terminology.js);
 * - reference targets (the type of a reference must be one of the targetProfile types; Medplum
 *   does not check this at all), also inside extension values and for `#id` references to
 *   contained resources;
 * - extension definitions (value[x] type and cardinality, nested extensions) and the
 *   cardinality of extension slices (e.g. at most one resource-origin);
 * - date/dateTime/instant/time format against the R4 regexes plus calendar validity;
 * - Period per-1 and "a >= b" ordering invariants such as KT2Task inv-1, evaluated with
 *   FHIRPath date semantics (Medplum compares strings, see temporal.js);
 * - ele-1 for empty strings, objects and arrays (Medplum accepts "", {} and []);
 * - the target type of a canonical (the resource type its URL names, e.g. `…/Questionnaire/x`
 *   where KT2ActivityDefinition is wanted);
 * - the syntax of resource ids (Medplum only checks that an id is a string);
 * - ref-1 and dom-3, the invariants about local `#id` references (see contained.js).
 */
const core = require('@medplum/core');
const { issue } = require('./outcome');
const { localReferenceIssues } = require('./contained');
const { parseTemporal, greaterOrEqual } = require('./temporal');

const TEMPORAL = new Set(['date', 'dateTime', 'instant', 'time']);
const ORDERING = /^(\w+)\.exists\(\)\.not\(\) or (\w+)\.exists\(\)\.not\(\) or \1 >= \2$/;
const REFERENCE_TYPE = /(?:^|\/)([A-Z][A-Za-z]+)\/[A-Za-z0-9\-.]{1,64}(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

class Validator {
  /** @param {import('./conformance').Conformance} conformance */
  constructor(conformance) {
    this.conformance = conformance;
  }

  /**
   * All errors of a resource, deduplicated, each with an expression where one applies.
   * @param {object} resource parsed FHIR JSON whose resourceType is known
   * @returns {object[]} OperationOutcome issues (empty when valid)
   */
  validate(resource) {
    const profiles = this.conformance.declaredProfiles(resource);
    const ordering = profiles.flatMap(orderingInvariants);
    const issues = [];
    for (const profile of profiles.length ? profiles : [undefined]) {
      issues.push(...medplumIssues(resource, profile, ordering));
    }
    issues.push(...emptyElements(resource, resource.resourceType));
    issues.push(...choiceIssues(resource, resource.resourceType));
    issues.push(...this.codeSystemIssues(resource, resource.resourceType));
    const flagged = new Set(issues.flatMap((i) => i.expression ?? []));
    const schemas = profiles.length ? profiles.map((sd) => core.tryGetProfile(sd.url)) : [undefined];
    const crawls = [...schemas.map((schema) => () => this.crawl(resource, schema, flagged)),
      () => localReferenceIssues(resource)];
    for (const crawl of crawls) {
      try {
        issues.push(...crawl());
      } catch (err) {
        // The crawler can trip over structures Medplum already rejected; otherwise it is a bug.
        if (!issues.length) issues.push(issue('processing', `validation failed: ${err.message}`));
      }
    }
    issues.push(...this.idIssues(resource));
    for (const profile of profiles) issues.push(...extensionSliceIssues(resource, profile));
    for (const inv of ordering) issues.push(...orderingIssues(resource, inv));
    return dedupe(issues);
  }

  /**
   * A Coding of a CodeSystem loaded in full (content `complete`) must use one of its codes,
   * whatever the binding, as the HL7 validator checks it. Codings are found by shape (an
   * object with string `system` and `code` and no `value`, which a Quantity has).
   */
  codeSystemIssues(value, path) {
    if (Array.isArray(value)) return value.flatMap((v, i) => this.codeSystemIssues(v, `${path}[${i}]`));
    if (!value || typeof value !== 'object') return [];
    const issues = Object.keys(value).flatMap((k) => this.codeSystemIssues(value[k], `${path}.${k}`));
    if (typeof value.system === 'string' && typeof value.code === 'string' && !('value' in value)) {
      const message = this.conformance.terminology.checkKnownSystem(value.system, value.code);
      if (message) issues.push(issue('code-invalid', message, path));
    }
    return issues;
  }

  /** Walks the resource with Medplum's typed crawler and checks each value's element. */
  crawl(resource, schema, flagged) {
    const issues = [];
    const local = localTypes(resource);
    const visitor = {
      visitProperty: (_parent, key, _path, values, parentSchema) => {
        const element = elementOf(parentSchema, key);
        for (const tv of values.flat()) issues.push(...this.checkValue(element, tv, flagged, local));
      },
    };
    core.crawlTypedValue(core.toTypedValue(resource), visitor, { schema, skipMissingProperties: true });
    return issues;
  }

  checkValue(element, tv, flagged, local) {
    const issues = [];
    const binding = element?.binding;
    if (binding?.strength === 'required' && binding.valueSet) {
      const message = this.conformance.terminology.checkRequired(binding.valueSet, tv.type, tv.value);
      if (message) issues.push(issue('code-invalid', message, tv.path));
    }
    if (tv.type === 'Reference') {
      issues.push(...this.targetIssues(referenceTargets(element), tv.value, tv.path, local));
    } else if (tv.type === 'canonical' && typeof tv.value === 'string') {
      issues.push(...this.canonicalIssues(canonicalTargets(element), tv.value, tv.path));
    } else if (tv.type === 'Extension') {
      issues.push(...this.extensionIssues(tv.value, tv.path, local));
    } else if (tv.type === 'Period') {
      issues.push(...periodIssues(tv.value, tv.path));
    } else if (TEMPORAL.has(tv.type) && typeof tv.value === 'string' && !flagged.has(tv.path)) {
      issues.push(...this.temporalIssues(tv.type, tv.value, tv.path));
    }
    return issues;
  }

  /**
   * The type of a reference (from `type`, from `Type/id` in `reference`, or the contained
   * resource a `#id` names; `local` maps '#id' to its type) must be allowed.
   */
  targetIssues(targetProfiles, reference, path, local = new Map()) {
    if (!targetProfiles.length || !reference) return [];
    const allowed = targetProfiles.map((url) => this.conformance.typeOfProfile(url));
    if (allowed.includes('Resource')) return [];
    const found = new Set();
    if (typeof reference.type === 'string') found.add(reference.type);
    const literal = typeof reference.reference === 'string' && REFERENCE_TYPE.exec(reference.reference);
    if (literal && core.isResourceType(literal[1])) found.add(literal[1]);
    if (local.has(reference.reference)) found.add(local.get(reference.reference));
    return [...found]
      .filter((type) => !allowed.includes(type))
      .map((type) => issue('structure',
        `A reference to ${type} is not allowed here; allowed: ${allowed.join(', ')} (targetProfile ${targetProfiles.join(', ')})`,
        path));
  }

  /**
   * A canonical whose URL names a resource type (second-to-last path segment, as in
   * `http://example.org/fhir/Questionnaire/x|1.0`) must name a targetProfile's type. URLs that
   * name no type (urn:uuid:…, `#id`, …) cannot be judged without resolving them, so they pass.
   */
  canonicalIssues(targetProfiles, url, path) {
    const segments = url.split('|')[0].replace(/\/+$/, '').split('/');
    const named = segments[segments.length - 2];
    if (!targetProfiles.length || !named || !core.isResourceType(named)) return [];
    return this.targetIssues(targetProfiles, { type: named }, path);
  }

  /**
   * Resource.id (of the resource and of contained ones) must be an R4 `id`, also on a create
   * that then ignores it: HAPI validates the body as sent.
   */
  idIssues(resource) {
    const regex = this.conformance.primitiveRegex.get('id');
    const contained = Array.isArray(resource.contained) ? resource.contained : [];
    const resources = [[resource, resource.resourceType],
      ...contained.map((c, i) => [c, `${resource.resourceType}.contained[${i}]`])];
    return resources
      .filter(([r]) => typeof r?.id === 'string' && !regex.test(r.id))
      .map(([r, path]) => issue('value',
        `Invalid id '${r.id}': an id has 1 to 64 characters A-Z, a-z, 0-9, '-' and '.'`, `${path}.id`));
  }

  /** Checks an extension whose definition is loaded: its value[x] and nested extensions. */
  extensionIssues(extension, path, local) {
    const sd = this.conformance.extensions.get(extension?.url);
    if (!sd) return [];
    const issues = [];
    const byId = (id) => sd.snapshot.element.find((e) => e.id === id);
    const valueElement = byId('Extension.value[x]');
    const valueKeys = Object.keys(extension).filter((k) => /^value[A-Z]/.test(k));
    if (valueElement?.max === '0' && valueKeys.length) {
      issues.push(issue('structure', `Extension ${sd.url} must not have a value`, `${path}.${valueKeys[0]}`));
    } else if (valueElement?.min > 0 && !valueKeys.length) {
      issues.push(issue('required', `Extension ${sd.url} requires a value`, path));
    }
    for (const key of valueKeys) {
      const suffix = key.slice('value'.length);
      const type = (valueElement?.type ?? []).find((t) => t.code.charAt(0).toUpperCase() + t.code.slice(1) === suffix);
      if (!type) {
        const allowed = (valueElement?.type ?? []).map((t) => t.code).join(', ');
        issues.push(issue('structure', `Extension ${sd.url} does not allow a value of type ${suffix}; allowed: ${allowed}`, `${path}.${key}`));
      } else if (suffix === 'Reference') {
        issues.push(...this.targetIssues(type.targetProfile ?? [], extension[key], `${path}.${key}`, local));
      }
    }
    if (byId('Extension.extension')?.max === '0' && extension.extension?.length) {
      issues.push(issue('structure', `Extension ${sd.url} must not have nested extensions`, `${path}.extension`));
    }
    return issues;
  }

  /** R4 regex (Medplum's is laxer: no zone needed, hour-only times) plus a real calendar date. */
  temporalIssues(type, value, path) {
    const regex = this.conformance.primitiveRegex.get(type);
    const calendar = type === 'time' || parseTemporal(value) !== null;
    if (regex?.test(value) && calendar) return [];
    return [issue('value', `Invalid ${type} value '${value}'`, path)];
  }
}

function elementOf(schema, key) {
  if (schema.elements[key]) return schema.elements[key];
  for (const [name, element] of Object.entries(schema.elements)) {
    if (name.endsWith('[x]') && key.startsWith(name.slice(0, -3))) return element;
  }
  return undefined;
}

function referenceTargets(element) {
  return (element?.type ?? []).filter((t) => t.code === 'Reference').flatMap((t) => t.targetProfile ?? []);
}

/** '#id' -> resourceType of each contained resource, to type local references. */
function localTypes(resource) {
  const contained = Array.isArray(resource.contained) ? resource.contained : [];
  return new Map(contained
    .filter((c) => typeof c?.id === 'string' && typeof c.resourceType === 'string')
    .map((c) => [`#${c.id}`, c.resourceType]));
}

function canonicalTargets(element) {
  return (element?.type ?? []).filter((t) => t.code === 'canonical').flatMap((t) => t.targetProfile ?? []);
}

/** Medplum's verdict for one profile (or the base), minus the ordering invariants redone here. */
function medplumIssues(resource, profile, ordering) {
  try {
    core.validateResource(resource, profile ? { profile } : undefined);
    return [];
  } catch (err) {
    if (!err.outcome) return [issue('processing', `validation failed: ${err.message}`)];
    return err.outcome.issue
      .filter((i) => i.severity === 'error' || i.severity === 'fatal')
      .filter((i) => !ordering.some((inv) => i.details?.text?.startsWith(`Constraint ${inv.key} not met`)))
      .map((i) => ({ severity: i.severity, code: i.code, diagnostics: i.details?.text ?? i.diagnostics, expression: i.expression }));
  }
}

/** Invariants of the form `a.exists().not() or b.exists().not() or a >= b` on the profile root. */
function orderingInvariants(profile) {
  return (profile.snapshot.element[0].constraint ?? []).flatMap((c) => {
    const m = ORDERING.exec(c.expression ?? '');
    return m ? [{ key: c.key, human: c.human, later: m[1], earlier: m[2], type: profile.type }] : [];
  });
}

function orderingIssues(resource, inv) {
  return compareIssue(resource[inv.later], resource[inv.earlier], inv.key, inv.human, inv.type);
}

function periodIssues(period, path) {
  return compareIssue(period?.end, period?.start, 'per-1', 'If present, start SHALL have a lower value than end', path);
}

/**
 * `later >= earlier` must be true; an empty FHIRPath result (values of different precision
 * that agree as far as both go) fails too, as in the HL7 validator. Unparsable values are left
 * to the format check.
 */
function compareIssue(later, earlier, key, human, path) {
  if (typeof later !== 'string' || typeof earlier !== 'string') return [];
  if (!parseTemporal(later) || !parseTemporal(earlier)) return [];
  const result = greaterOrEqual(later, earlier);
  if (result === true) return [];
  const why = result === undefined ? ' (the values differ in precision and cannot be ordered)' : '';
  return [issue('invariant', `Constraint ${key} not met: ${human}${why}`, path)];
}

/** ele-1: "", {} and [] are not valid FHIR JSON anywhere (null entries in arrays are left to Medplum). */
function emptyElements(value, path) {
  if (value === '') return [issue('invalid', 'ele-1: empty string values are not allowed', path)];
  if (Array.isArray(value)) {
    if (!value.length) return [issue('invalid', 'ele-1: empty arrays are not allowed', path)];
    return value.flatMap((v, i) => emptyElements(v, `${path}[${i}]`));
  }
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (!keys.length) return [issue('invalid', 'ele-1: empty objects are not allowed', path)];
    return keys.flatMap((k) => emptyElements(value[k], `${path}.${k}`));
  }
  return [];
}

/**
 * A choice element given twice (`multipleBirthBoolean` and `multipleBirthInteger`): two
 * properties of one object sharing a stem, each ending in a FHIR type name.
 */
function choiceIssues(value, path) {
  if (Array.isArray(value)) return value.flatMap((v, i) => choiceIssues(v, `${path}[${i}]`));
  if (!value || typeof value !== 'object') return [];
  const issues = Object.keys(value).flatMap((k) => choiceIssues(value[k], `${path}.${k}`));
  const stems = new Map();
  for (const key of Object.keys(value)) {
    const match = /^([a-z][A-Za-z]*?)([A-Z][A-Za-z]*)$/.exec(key);
    if (!match) continue;
    for (let i = 1; i < key.length; i++) {
      const type = key.slice(i);
      if (!/^[A-Z]/.test(type)) continue;
      const code = type[0].toLowerCase() + type.slice(1);
      if (!COMPLEX.has(type) && !PRIMITIVES.has(code)) continue;
      const stem = key.slice(0, i);
      if (stems.has(stem) && stems.get(stem) !== key) {
        issues.push(issue('structure', `${stem}[x] is given twice (${stems.get(stem)}, ${key})`, `${path}.${key}`));
      }
      stems.set(stem, key);
      break;
    }
  }
  return issues;
}

const COMPLEX = new Set(['Address', 'Age', 'Annotation', 'Attachment', 'CodeableConcept', 'Coding', 'ContactDetail',
  'ContactPoint', 'Contributor', 'Count', 'DataRequirement', 'Distance', 'Dosage', 'Duration', 'Expression',
  'HumanName', 'Identifier', 'Meta', 'Money', 'ParameterDefinition', 'Period', 'Quantity', 'Range', 'Ratio',
  'Reference', 'RelatedArtifact', 'SampledData', 'Signature', 'Timing', 'TriggerDefinition', 'UsageContext']);
const PRIMITIVES = new Set(['boolean', 'integer', 'string', 'decimal', 'uri', 'url', 'canonical', 'base64Binary',
  'instant', 'date', 'dateTime', 'time', 'code', 'oid', 'id', 'markdown', 'unsignedInt', 'positiveInt', 'uuid']);

/** Cardinality of extension slices such as Task.extension:resource-origin (max 1). */
function extensionSliceIssues(resource, profile) {
  const issues = [];
  for (const element of profile.snapshot.element) {
    const extensionUrl = element.type?.[0]?.profile?.[0];
    const segments = element.id.split('.');
    if (!element.sliceName || !extensionUrl || segments.slice(0, -1).some((s) => s.includes(':'))) continue;
    const property = segments[segments.length - 1].split(':')[0];
    if (property !== 'extension' && property !== 'modifierExtension') continue;
    for (const parent of select(resource, segments.slice(1, -1))) {
      const count = (Array.isArray(parent.value[property]) ? parent.value[property] : [])
        .filter((x) => x?.url === extensionUrl).length;
      const max = element.max === '*' ? Infinity : Number(element.max);
      if (count < element.min || count > max) {
        issues.push(issue('structure',
          `${element.id}: found ${count} extension(s) with url ${extensionUrl}, allowed ${element.min}..${element.max}`,
          `${parent.path}.${property}`));
      }
    }
  }
  return issues;
}

/** The JSON values at a dotted element path below the resource root, with their paths. */
function select(resource, segments) {
  let nodes = [{ value: resource, path: resource.resourceType }];
  for (const segment of segments) {
    nodes = nodes.flatMap((n) => {
      const v = n.value?.[segment];
      if (Array.isArray(v)) return v.map((x, i) => ({ value: x, path: `${n.path}.${segment}[${i}]` }));
      return v && typeof v === 'object' ? [{ value: v, path: `${n.path}.${segment}` }] : [];
    });
  }
  return nodes.filter((n) => n.value && typeof n.value === 'object');
}

function dedupe(issues) {
  const seen = new Set();
  return issues.filter((i) => {
    const key = `${i.severity}|${i.code}|${(i.expression ?? []).join()}|${i.diagnostics}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

module.exports = { Validator };
