'use strict';
/**
 * Medplum's MemoryRepository with HAPI's bookkeeping: integer version ids (W/"1", W/"2", ...),
 * server-set meta.lastUpdated, 410 Gone for deleted resources, and an index of who references
 * whom so that deleting a referenced resource can be refused (409), as HAPI does by default.
 */
const core = require('@medplum/core');
const { MemoryRepository } = require('@medplum/fhir-router');
const { literalReferences } = require('./rules');

class KoppeltaalRepository extends MemoryRepository {
  constructor() {
    super();
    /** @type {Map<string, number>} "Type/id" -> latest version number (deletes count too) */
    this.versions = new Map();
    /** @type {Set<string>} "Type/id" of deleted resources */
    this.deleted = new Set();
    /** @type {Map<string, {target: string, path: string}[]>} outgoing references per resource */
    this.outgoing = new Map();
  }

  /** Every create and update of MemoryRepository ends here, so versions are assigned here. */
  async createResource(resource, options) {
    const { resourceType, id = this.generateId(), meta, ...rest } = resource;
    const key = `${resourceType}/${id}`;
    const version = (this.versions.get(key) ?? 0) + 1;
    const copy = {
      resourceType,
      id,
      meta: { ...meta, versionId: String(version), lastUpdated: new Date().toISOString() },
      ...rest,
    };
    const stored = await super.createResource(copy, options);
    this.versions.set(key, version);
    this.deleted.delete(key);
    this.outgoing.set(key, literalReferences(stored, resourceType));
    return stored;
  }

  async readResource(resourceType, id) {
    if (this.deleted.has(`${resourceType}/${id}`)) throw new core.OperationOutcomeError(core.gone);
    return super.readResource(resourceType, id);
  }

  /** History newest first, read version by version (the parent reverses its list in place). */
  async readHistory(resourceType, id) {
    const latest = this.versions.get(`${resourceType}/${id}`) ?? 0;
    const entry = [];
    for (let v = latest; v >= 1; v--) {
      try {
        entry.push({ resource: await super.readVersion(resourceType, id, String(v)) });
      } catch {
        // a version number used by a delete has no stored resource
      }
    }
    if (!entry.length) throw new core.OperationOutcomeError(core.notFound);
    return { resourceType: 'Bundle', type: 'history', total: entry.length, entry };
  }

  async deleteResource(resourceType, id) {
    const key = `${resourceType}/${id}`;
    await super.deleteResource(resourceType, id);
    this.versions.set(key, (this.versions.get(key) ?? 0) + 1);
    this.deleted.add(key);
    this.outgoing.delete(key);
  }

  /** Whether "Type/id" names a live resource. */
  exists(target) {
    return this.versions.has(target) && !this.deleted.has(target);
  }

  /** Whether "Type/id" was deleted (and not created again). */
  isDeleted(target) {
    return this.deleted.has(target);
  }

  /** The first other resource that references "Type/id", with the path, or undefined. */
  firstReferrer(target) {
    for (const [source, refs] of this.outgoing) {
      const ref = source !== target && refs.find((r) => r.target === target);
      if (ref) return { source, path: ref.path };
    }
    return undefined;
  }
}

module.exports = { KoppeltaalRepository };
