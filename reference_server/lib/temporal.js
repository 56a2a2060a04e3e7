'use strict';
/**
 * FHIR date/dateTime/instant values: calendar validity and FHIRPath ordering.
 *
 * Why this exists: Medplum 4.5.2 compares dateTimes as strings, so `lastModified >= authoredOn`
 * (KT2Task inv-1) and Period per-1 give wrong answers across time zones ("11:00+02:00" sorts
 * after "10:00Z" although it is an hour earlier) and with fractional seconds; its regexes also
 * accept impossible dates (2024-02-30) and times without a zone. The wrapper re-evaluates those
 * invariants with the semantics of the FHIRPath spec, as the HL7 validator inside HAPI does.
 */

const PARTS = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/** Number of components that a value of each precision has (seconds and fractions are one). */
const COMPONENTS = { year: 1, month: 2, day: 3, second: 4 };

function daysInMonth(year, month) {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * Parses a FHIR temporal string into its precision and UTC components
 * [year, month, day, millisecond-of-day]; null when the text is not a real calendar value.
 * Values without a zone (dates, or times the format check rejects anyway) are taken as UTC.
 * @param {string} text
 * @returns {{precision: string, components: number[]}|null}
 */
function parseTemporal(text) {
  const m = PARTS.exec(text);
  if (!m) return null;
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y);
  if (mo === undefined) return { precision: 'year', components: [year] };
  const month = Number(mo);
  if (month < 1 || month > 12) return null;
  if (d === undefined) return { precision: 'month', components: [year, month] };
  const day = Number(d);
  if (day < 1 || day > daysInMonth(year, month)) return null;
  if (h === undefined) return { precision: 'day', components: [year, month, day] };
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 60) return null;
  let offsetMinutes = 0;
  if (zone && zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    offsetMinutes = sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)));
  }
  const fractionMs = frac ? Number(`0.${frac}`) * 1000 : 0;
  const utc = Date.UTC(year, month - 1, day, Number(h), Number(mi) - offsetMinutes, Number(s));
  const t = new Date(utc);
  const msOfDay = utc - Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()) + fractionMs;
  return {
    precision: 'second',
    components: [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate(), msOfDay],
  };
}

/**
 * FHIRPath `left >= right` for two temporal strings: compares component by component after
 * normalising to UTC; when they are equal as far as the less precise one goes but precisions
 * differ, the result is empty (undefined), as the FHIRPath spec prescribes.
 * @returns {boolean|undefined}
 */
function greaterOrEqual(left, right) {
  const a = parseTemporal(left);
  const b = parseTemporal(right);
  if (!a || !b) return undefined;
  const n = Math.min(COMPONENTS[a.precision], COMPONENTS[b.precision]);
  for (let i = 0; i < n; i++) {
    if (a.components[i] !== b.components[i]) return a.components[i] > b.components[i];
  }
  return a.precision === b.precision ? true : undefined;
}

module.exports = { parseTemporal, greaterOrEqual };
