'use strict';
/** The CapabilityStatement served at GET /fhir/metadata. */

const INTERACTIONS = ['read', 'vread', 'update', 'delete', 'history-instance', 'create', 'search-type'];

/**
 * @param {object} options
 * @param {string} options.baseUrl e.g. http://127.0.0.1:8080/fhir
 * @param {string[]} options.resourceTypes the types the server accepts
 * @param {import('./conformance').Conformance} options.conformance for supportedProfile
 * @param {boolean} options.secured whether a bearer token is required
 * @param {string} options.version server version
 */
function capabilityStatement({ baseUrl, resourceTypes, conformance, secured, version }) {
  const profilesByType = new Map();
  for (const sd of conformance.profiles.values()) {
    profilesByType.set(sd.type, [...(profilesByType.get(sd.type) ?? []), sd.url]);
  }
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString(),
    publisher: 'kt2conformance',
    kind: 'instance',
    software: { name: 'kt2conformance reference Koppeltaal server (Medplum fhir-router)', version },
    implementation: { description: 'Embedded reference Koppeltaal 2.0 server', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [{
      mode: 'server',
      ...(secured && {
        security: {
          service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'OAuth' }] }],
          description: 'Every request except GET /metadata needs Authorization: Bearer <token>',
        },
      }),
      resource: resourceTypes.map((type) => ({
        type,
        ...(profilesByType.has(type) && { supportedProfile: profilesByType.get(type) }),
        interaction: INTERACTIONS.map((code) => ({ code })),
        versioning: 'versioned',
        readHistory: true,
        updateCreate: true,
        referencePolicy: ['literal', 'enforced', 'local'],
      })),
    }],
  };
}

module.exports = { capabilityStatement };
