// Evaluates FHIRPath cases with the reference JavaScript engine (npm
// `fhirpath`, R4 model) for gp-fhirpath's differential test.
//
// Input (argv[2]): JSON lines, each {"file": PATH, "expr": EXPRESSION}.
// Output (stdout): one JSON line per case, {"ok": [results]} or
// {"error": MESSAGE}, in input order.
'use strict';
const fs = require('fs');
const readline = require('readline');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');

// `trace()` writes with console.log: keep stdout for the answers.
console.log = (...args) => process.stderr.write(args.join(' ') + '\n');

const resources = new Map();
const compiled = new Map();

function resource(file) {
  if (!resources.has(file)) {
    resources.clear(); // cases come grouped by file
    resources.set(file, JSON.parse(fs.readFileSync(file, 'utf8')));
  }
  return resources.get(file);
}

function compile(expr) {
  if (!compiled.has(expr)) {
    try {
      compiled.set(expr, { fn: fhirpath.compile(expr, r4) });
    } catch (e) {
      compiled.set(expr, { error: String(e.message || e) });
    }
  }
  return compiled.get(expr);
}

async function main() {
  const out = [];
  const lines = readline.createInterface({ input: fs.createReadStream(process.argv[2]) });
  for await (const line of lines) {
    if (!line) continue;
    const c = JSON.parse(line);
    const f = compile(c.expr);
    let answer;
    if (f.error) {
      answer = { error: f.error };
    } else {
      try {
        const r = resource(c.file);
        // FHIR's environment variables (fhirpath.html#vars): the resource
        // the expression is evaluated on.
        answer = { ok: f.fn(r, { resource: r, rootResource: r }) };
      } catch (e) {
        answer = { error: String(e.message || e) };
      }
    }
    out.push(JSON.stringify(answer));
    if (out.length >= 1000) {
      process.stdout.write(out.join('\n') + '\n');
      out.length = 0;
    }
  }
  if (out.length) process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e.stack || e) + '\n');
  process.exit(1);
});
