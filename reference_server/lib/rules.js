'use strict';
/**
 * The rules a Koppeltaal server enforces beyond the profile (CONTRACT.md `server/<rule>` keys):
 * a Task must declare KT2Task (412), a `view` sub-task needs partOf (422), and literal
 * references must resolve (400) — in that order, after content negotiation, auth, JSON syntax
 * and profile validation, as on the production HAPI server.
 */
const core = require('@medplum/core');
const { FhirError, issue, fail } = require('./outcome');
const { canonical } = require('./terminology');

const KT2TASK = 'http://koppeltaal.nl/fhir/StructureDefinition/KT2Task';
const TASK_CODE_SYSTEM = 'http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code';
const RELATIVE_REFERENCE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/** The types whose resources must claim their KT2 profile (production's repository rule). */
const KT2_TYPES = new Set(['ActivityDefinition', 'AuditEvent', 'CareTeam', 'Device', 'Endpoint',
  'Organization', 'Patient', 'Practitioner', 'RelatedPerson', 'Subscription', 'Task']);

/**
 * server/meta.profile: HAPI's Koppeltaal set-up refuses a resource of a KT2 type that does not
 * claim its KT2 profile (KT2Task for a Task, KT2Patient for a Patient, ...).
 */
function requireTaskProfile(resource) {
  const type = resource.resourceType;
  if (!KT2_TYPES.has(type)) return;
  const wanted = type === 'Task' ? KT2TASK : `http://koppeltaal.nl/fhir/StructureDefinition/KT2${type}`;
  const declared = (resource.meta?.profile ?? []).map(canonical);
  if (!declared.includes(wanted)) {
    throw fail(412, 'processing', `A ${type} must declare the profile ${wanted} in meta.profile`, `${type}.meta.profile`);
  }
}

/** server/subtask-partOf: a Task coded `view` is a sub-task and must point to its main Task. */
function requireSubtaskPartOf(resource) {
  if (resource.resourceType !== 'Task') return;
  const isView = (resource.code?.coding ?? []).some((c) => c?.system === TASK_CODE_SYSTEM && c?.code === 'view');
  if (isView && !resource.partOf?.length) {
    throw fail(422, 'business-rule', `A Task with code ${TASK_CODE_SYSTEM}#view is a sub-task and needs partOf`, 'Task.partOf');
  }
}

/**
 * Every relative literal reference (`Type/id`, optionally versioned) in the resource, including
 * contained resources and extensions, with the path of the Reference element.
 * @returns {{target: string, path: string}[]} target is "Type/id"
 */
function literalReferences(value, path) {
  if (Array.isArray(value)) return value.flatMap((v, i) => literalReferences(v, `${path}[${i}]`));
  if (!value || typeof value !== 'object') return [];
  const found = [];
  const m = typeof value.reference === 'string' && RELATIVE_REFERENCE.exec(value.reference);
  if (m && core.isResourceType(m[1])) found.push({ target: `${m[1]}/${m[2]}`, path });
  for (const [key, child] of Object.entries(value)) {
    if (child && typeof child === 'object') found.push(...literalReferences(child, `${path}.${key}`));
  }
  return found;
}

/**
 * server/reference-integrity: HAPI refuses (400) a write whose references point nowhere.
 * @param {object} resource
 * @param {(target: string) => boolean} exists
 */
function requireResolvableReferences(resource, exists) {
  const self = `${resource.resourceType}/${resource.id}`;
  const missing = literalReferences(resource, resource.resourceType)
    .filter((r) => r.target !== self && !exists(r.target));
  if (missing.length) {
    throw new FhirError(400, missing.map((r) => issue('processing',
      `Resource ${r.target} not found, specified in path: ${r.path}`, r.path)));
  }
}

module.exports = { requireTaskProfile, requireSubtaskPartOf, requireResolvableReferences, literalReferences };
