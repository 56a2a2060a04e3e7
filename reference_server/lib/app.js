'use strict';
/**
 * The HTTP side of the reference server. A request passes the checks in the order the
 * production Koppeltaal server (HAPI FHIR 8.2) applies them, and only then reaches Medplum's
 * FhirRouter over the in-memory repository:
 *   Content-Type (415) and Accept (406) -> bearer token (401) -> route and resource type (404,
 *   405) -> JSON syntax (400) -> Task declares KT2Task (412) -> profile validation (422) ->
 *   sub-task rule (422) -> referential integrity (400) -> storage.
 * Every error response is an OperationOutcome (see outcome.js).
 */
const crypto = require('node:crypto');
const core = require('@medplum/core');
const { FhirRouter } = require('@medplum/fhir-router');
const { FhirError, issue, fail, operationOutcome } = require('./outcome');
const rules = require('./rules');
const { Validator } = require('./validator');
const { capabilityStatement } = require('./capability');
const { CONFORMANCE_TYPES } = require('./conformance');

/** What a Koppeltaal server stores, plus the conformance resources needed to add profiles. */
const RESOURCE_TYPES = [
  'Task', 'Patient', 'Practitioner', 'CareTeam', 'RelatedPerson', 'ActivityDefinition', 'Device',
  'Organization', 'Endpoint', 'StructureDefinition', 'ValueSet', 'CodeSystem',
];
const FHIR_JSON = new Set(['application/fhir+json', 'application/json', 'application/json+fhir']);
const ACCEPTABLE = new Set([...FHIR_JSON, '*/*', 'application/*']);
const OPEN_PATHS = new Set(['metadata', '.well-known/smart-configuration']);
const ID = /^[A-Za-z0-9\-.]{1,64}$/;
const MAX_BODY_BYTES = 16 * 1024 * 1024;
const CONTENT_TYPE = 'application/fhir+json;charset=utf-8';

class App {
  /**
   * @param {object} options
   * @param {import('./conformance').Conformance} options.conformance
   * @param {import('./repository').KoppeltaalRepository} options.repository
   * @param {string|undefined} options.token bearer token every request must carry, if set
   * @param {string} options.version
   */
  constructor({ conformance, repository, token, version }) {
    this.conformance = conformance;
    this.repository = repository;
    this.tokenDigest = token ? digest(token) : undefined;
    this.version = version;
    this.router = new FhirRouter();
    this.validator = new Validator(conformance);
    this.handler = (req, res) => this.handle(req, res);
  }

  async handle(req, res) {
    let response;
    try {
      response = await this.respond(req);
    } catch (err) {
      if (!(err instanceof FhirError)) {
        process.stderr.write(`error: ${req.method} ${req.url}: ${err.stack ?? err}\n`);
        err = fail(500, 'exception', `internal error: ${err.message}`);
      }
      response = { status: err.status, body: operationOutcome(err.issues), headers: err.headers };
    }
    const payload = response.body === undefined ? '' : JSON.stringify(response.body);
    res.writeHead(response.status, {
      'Content-Type': CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(payload),
      ...response.headers,
    });
    res.end(payload);
  }

  async respond(req) {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/fhir' && !url.pathname.startsWith('/fhir/')) {
      throw fail(404, 'not-found', `Nothing at ${url.pathname}: the FHIR base is /fhir`);
    }
    checkContentType(req);
    checkAccept(req);
    const segments = pathSegments(url.pathname.slice('/fhir'.length));
    this.checkToken(req, segments.join('/'));
    const base = `http://${req.headers.host ?? `${req.socket.localAddress}:${req.socket.localPort}`}/fhir`;
    return this.route(req, url, segments, base);
  }

  checkToken(req, path) {
    if (!this.tokenDigest || (req.method === 'GET' && OPEN_PATHS.has(path))) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) {
      throw new FhirError(401, [issue('security', 'Missing bearer token: send Authorization: Bearer <token>')],
        { 'WWW-Authenticate': 'Bearer realm="fhir"' });
    }
    if (!crypto.timingSafeEqual(digest(m[1]), this.tokenDigest)) {
      throw new FhirError(401, [issue('security', 'Invalid bearer token')],
        { 'WWW-Authenticate': 'Bearer realm="fhir", error="invalid_token"' });
    }
  }

  async route(req, url, segments, base) {
    const path = segments.join('/');
    if (req.method === 'GET' && path === 'metadata') {
      return { status: 200, body: this.capability(base) };
    }
    if (path === '.well-known/smart-configuration') {
      throw fail(404, 'not-found', 'This server has no SMART on FHIR token endpoint; it accepts only the static bearer token given with --token');
    }
    const [type, id, history, vid] = segments;
    if (!type) throw fail(404, 'not-found', 'No system-level interactions: use /fhir/<ResourceType>');
    requireSupportedType(type);
    for (const value of [id, vid]) {
      if (value !== undefined && !ID.test(value)) throw fail(400, 'invalid', `Invalid id '${value}'`);
    }
    if (history !== undefined && (history !== '_history' || segments.length > 4)) {
      throw fail(404, 'not-found', `Nothing at /fhir/${path}`);
    }
    const routes = {
      1: { GET: () => this.search(url, type, base), POST: () => this.write(req, type, undefined, base) },
      2: {
        GET: () => this.read(`/${type}/${id}`),
        PUT: () => this.write(req, type, id, base),
        DELETE: () => this.delete(type, id),
      },
      3: { GET: () => this.read(`/${type}/${id}/_history`) },
      4: { GET: () => this.read(`/${type}/${id}/_history/${vid}`) },
    };
    const handler = routes[segments.length][req.method];
    if (!handler) throw fail(405, 'not-supported', `${req.method} /fhir/${path} is not supported`);
    return handler();
  }

  capability(base) {
    return capabilityStatement({
      baseUrl: base,
      resourceTypes: RESOURCE_TYPES,
      conformance: this.conformance,
      secured: Boolean(this.tokenDigest),
      version: this.version,
    });
  }

  /** POST (id undefined) or PUT: parse, apply the Koppeltaal rules in order, then store. */
  async write(req, type, id, base) {
    const resource = parseResource(await readBody(req), type);
    if (id !== undefined && resource.id !== id) {
      throw fail(400, 'invalid', resource.id === undefined
        ? 'The resource body must contain an id for an update'
        : `The id in the body (${resource.id}) does not match the URL (${id})`, `${type}.id`);
    }
    rules.requireTaskProfile(resource);
    // The body is validated as sent, a create's id included (a number or `not an id!` is a 422),
    // as HAPI's validating interceptor sees it before the create ignores that id.
    const issues = this.validator.validate(resource);
    if (issues.some((i) => i.severity === 'error' || i.severity === 'fatal')) throw new FhirError(422, issues);
    if (id === undefined) delete resource.id; // HAPI assigns the id on create and ignores the client's
    rules.requireSubtaskPartOf(resource);
    rules.requireResolvableReferences(resource, (target) => this.repository.exists(target));

    const existing = id !== undefined && this.repository.exists(`${type}/${id}`)
      ? await this.repository.readResource(type, id) : undefined;
    if (existing) requireCurrentIfMatch(req.headers['if-match'], existing);
    if (CONFORMANCE_TYPES.has(type)) {
      if (existing) this.conformance.unregister(existing);
      this.conformance.register(resource);
    }
    const method = id === undefined ? 'POST' : 'PUT';
    const stored = await this.dispatch(method, id === undefined ? `/${type}` : `/${type}/${id}`, resource, req.headers);
    const location = `${base}/${type}/${stored.id}/_history/${stored.meta.versionId}`;
    return {
      status: existing ? 200 : 201,
      body: stored,
      headers: { Location: location, 'Content-Location': location, ...versionHeaders(stored) },
    };
  }

  async read(routerUrl) {
    const resource = await this.dispatch('GET', routerUrl);
    return { status: 200, body: resource, headers: resource.meta?.versionId ? versionHeaders(resource) : {} };
  }

  async search(url, type, base) {
    const bundle = await this.dispatch('GET', `/${type}${url.search}`);
    for (const entry of bundle.entry ?? []) {
      entry.fullUrl = `${base}/${type}/${entry.resource.id}`;
      entry.search = { mode: 'match' };
    }
    bundle.link = [{ relation: 'self', url: `${base}/${type}${url.search}` }];
    return { status: 200, body: bundle };
  }

  /** HAPI semantics: deleting twice is fine, deleting a referenced resource is refused (409). */
  async delete(type, id) {
    const target = `${type}/${id}`;
    if (this.repository.isDeleted(target)) {
      return { status: 200, body: operationOutcome([issue('not-found', `${target} was already deleted`, undefined, 'information')]) };
    }
    if (!this.repository.exists(target)) throw fail(404, 'not-found', `Resource ${target} is not known`);
    const referrer = this.repository.firstReferrer(target);
    if (referrer) {
      throw fail(409, 'processing',
        `Unable to delete ${target} because at least one resource has a reference to this resource. First reference found was resource ${referrer.source} in path ${referrer.path}`);
    }
    const resource = await this.repository.readResource(type, id);
    await this.dispatch('DELETE', `/${target}`);
    if (CONFORMANCE_TYPES.has(type)) this.conformance.unregister(resource);
    return { status: 200, body: operationOutcome([issue('informational', `Successfully deleted ${target}`, undefined, 'information')]) };
  }

  /** Hands a request to Medplum's FhirRouter; a non-OK outcome becomes a FhirError. */
  async dispatch(method, routerUrl, body, headers = {}) {
    const request = { method, url: routerUrl, pathname: '', body, params: {}, query: {}, headers };
    const [outcome, resource] = await this.router.handleRequest(request, this.repository);
    if (!core.isOk(outcome)) {
      throw new FhirError(core.getStatus(outcome), outcome.issue.map((i) => ({
        severity: i.severity,
        code: i.code,
        diagnostics: i.diagnostics ?? i.details?.text,
        ...(i.expression && { expression: i.expression }),
      })));
    }
    return resource;
  }
}

function digest(text) {
  return crypto.createHash('sha256').update(text).digest();
}

function pathSegments(path) {
  try {
    return path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw fail(400, 'invalid', `Malformed URL path ${path}`);
  }
}

function checkContentType(req) {
  if (req.method !== 'POST' && req.method !== 'PUT') return;
  const header = req.headers['content-type'] ?? '';
  if (!FHIR_JSON.has(header.split(';')[0].trim().toLowerCase())) {
    throw fail(415, 'not-supported',
      `Unsupported Content-Type '${header}': send application/fhir+json (or application/json)`);
  }
}

function checkAccept(req) {
  const accept = req.headers.accept;
  if (!accept || !accept.trim()) return;
  const acceptable = accept.split(',').some((range) => {
    const [mime, ...params] = range.split(';').map((s) => s.trim().toLowerCase());
    const q = params.find((p) => p.startsWith('q='));
    return ACCEPTABLE.has(mime) && !(q && Number(q.slice(2)) === 0);
  });
  if (!acceptable) {
    throw fail(406, 'not-supported', `Cannot answer in any of '${accept}': this server returns application/fhir+json`);
  }
}

function requireSupportedType(type) {
  if (!core.isResourceType(type)) throw fail(404, 'not-found', `Unknown resource type '${type}'`);
  if (!RESOURCE_TYPES.includes(type)) {
    throw fail(404, 'not-supported', `Resource type ${type} is not supported by this server; it stores ${RESOURCE_TYPES.join(', ')}`);
  }
}

/** Reads the body; a body over the limit is drained and refused rather than cut off mid-stream. */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) reject(fail(413, 'too-costly', `Request body over ${MAX_BODY_BYTES} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function parseResource(text, type) {
  let resource;
  try {
    resource = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw fail(400, 'invalid', `Failed to parse request body as JSON: ${err.message}`);
  }
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    throw fail(400, 'invalid', 'The request body must be a FHIR resource: a JSON object with resourceType');
  }
  if (resource.resourceType !== type) {
    throw fail(400, 'invalid', `Expected a ${type} but the body has resourceType ${JSON.stringify(resource.resourceType)}`);
  }
  return resource;
}

/**
 * An update needs If-Match (production's EnforceIfMatchHeaderInterceptor: 412) naming the
 * current version (HAPI: 409 for a stale one).
 */
function requireCurrentIfMatch(ifMatch, existing) {
  if (!ifMatch || !ifMatch.trim()) throw fail(412, 'processing', 'If-Match header is required on updates');
  const wanted = ifMatch.trim().replace(/^W\//, '').replace(/"/g, '');
  if (wanted !== String(existing.meta?.versionId)) {
    throw fail(409, 'conflict', `Trying to update ${existing.resourceType}/${existing.id}/_history/${wanted} but this is not the current version`);
  }
}

function versionHeaders(resource) {
  return {
    ETag: `W/"${resource.meta.versionId}"`,
    'Last-Modified': new Date(resource.meta.lastUpdated).toUTCString(),
  };
}

module.exports = { App };
