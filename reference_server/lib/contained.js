'use strict';
/**
 * Local references (`#id`) and contained resources: the R4 invariants ref-1 and dom-3.
 *
 * Why this exists: Medplum 4.5.2 does not evaluate ref-1 (declared on the Reference datatype,
 * like per-1 on Period, which it skips too) and skips dom-3 on purpose, so it accepts
 * `for: #missing` and a contained resource nothing points to. HAPI's validator refuses both.
 */
const core = require('@medplum/core');
const { issue } = require('./outcome');

/** Types whose value can point at a contained resource in dom-3 (besides Reference.reference). */
const POINTER_TYPES = new Set(['canonical', 'uri', 'url']);
const CONTAINED_PATH = /^[A-Za-z]+\.contained\[(\d+)\]/;

/**
 * ref-1 on every Reference (in extensions, nested datatypes and contained resources too) and
 * dom-3 on every contained resource.
 * @param {object} resource parsed FHIR JSON whose resourceType is known
 * @returns {object[]} OperationOutcome issues
 */
function localReferenceIssues(resource) {
  const contained = Array.isArray(resource.contained) ? resource.contained : [];
  const ids = new Set(contained.map((c) => c?.id).filter((id) => typeof id === 'string'));
  const pointers = new Set(); // every '#…' text a Reference, canonical, uri or url holds
  const toContainer = new Set(); // indexes of contained resources that point back with '#'
  const issues = [];
  const visitor = {
    visitProperty: (_parent, _key, _path, values) => {
      for (const tv of values.flat()) {
        const text = tv.type === 'Reference' ? tv.value?.reference : POINTER_TYPES.has(tv.type) && tv.value;
        if (typeof text !== 'string' || !text.startsWith('#')) continue;
        pointers.add(text);
        const inContained = CONTAINED_PATH.exec(tv.path);
        if (text === '#' && inContained) {
          // '#' alone is the container: allowed from inside a contained resource (dom-3 relies
          // on it, and R4B's ref-1 says so); from the container itself it names nothing.
          if (tv.type === 'Reference' || tv.type === 'canonical') toContainer.add(Number(inContained[1]));
        } else if (tv.type === 'Reference' && !ids.has(text.slice(1))) {
          issues.push(issue('invariant',
            `Constraint ref-1 not met: SHALL have a contained resource if a local reference is provided (no contained resource with id '${text.slice(1)}')`,
            tv.path));
        }
      }
    },
  };
  core.crawlTypedValue(core.toTypedValue(resource), visitor, { skipMissingProperties: true });
  contained.forEach((c, i) => {
    if (typeof c?.id !== 'string' || pointers.has(`#${c.id}`) || toContainer.has(i)) return;
    issues.push(issue('invariant',
      `Constraint dom-3 not met: the contained resource '${c.id}' is not referred to from elsewhere in the resource (as #${c.id}) and does not refer to the containing resource`,
      `${resource.resourceType}.contained[${i}]`));
  });
  return issues;
}

module.exports = { localReferenceIssues };
