#!/usr/bin/python3
"""json_schema.py: validate JSON files against a JSON Schema, for saepipe's tests.

  json_schema.py [--builtin] SCHEMA.json FILE.json...

Uses the jsonschema package (Debian: python3-jsonschema) when it can be
imported and --builtin is not given; otherwise a small validator of the
subset the schemas under tests/data/ use (type, required, properties,
additionalProperties: false, items, minItems, minimum, maximum, minLength,
pattern, $ref to #/$defs/...). The builtin refuses a keyword it does not
know, so it never passes a schema by ignoring part of it.
Prints "FILE: ok" or "FILE: PATH: problem" lines; exit 1 on any problem.
"""
import json
import re
import sys

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
KNOWN = {"$schema", "$comment", "$defs", "$ref", "type", "required", "properties", "additionalProperties",
         "items", "minItems", "minimum", "maximum", "minLength", "pattern"}


def is_type(v, t):
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, TYPES[t])


def builtin(schema, root, v, path, out):
    unknown = set(schema) - KNOWN
    if unknown:
        sys.exit("json_schema.py: the builtin validator does not know %s" % sorted(unknown))
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            sys.exit("json_schema.py: the builtin validator only follows #/$defs/ references")
        return builtin(root["$defs"][ref[len("#/$defs/"):]], root, v, path, out)
    t = schema.get("type")
    if t and not is_type(v, t):
        out.append("%s: is %s, not %s" % (path, type(v).__name__, t))
        return
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                out.append("%s: no %r" % (path, k))
        props = schema.get("properties", {})
        for k, x in v.items():
            if k in props:
                builtin(props[k], root, x, "%s.%s" % (path, k), out)
            elif schema.get("additionalProperties", True) is False:
                out.append("%s: %r is not allowed" % (path, k))
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0):
            out.append("%s: fewer than %d items" % (path, schema["minItems"]))
        if "items" in schema:
            for i, x in enumerate(v):
                builtin(schema["items"], root, x, "%s[%d]" % (path, i), out)
    if is_type(v, "number"):
        if "minimum" in schema and v < schema["minimum"]:
            out.append("%s: %r < %r" % (path, v, schema["minimum"]))
        if "maximum" in schema and v > schema["maximum"]:
            out.append("%s: %r > %r" % (path, v, schema["maximum"]))
    if isinstance(v, str):
        if len(v) < schema.get("minLength", 0):
            out.append("%s: shorter than %d" % (path, schema["minLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            out.append("%s: %r does not match %s" % (path, v, schema["pattern"]))


def main(argv):
    use_builtin = "--builtin" in argv
    argv = [a for a in argv if a != "--builtin"]
    if len(argv) < 2:
        sys.exit(__doc__)
    with open(argv[0]) as f:
        schema = json.load(f)
    validator = None
    if not use_builtin:
        try:
            import jsonschema
            validator = jsonschema.Draft202012Validator(schema)
        except ImportError:
            pass
    bad = 0
    for name in argv[1:]:
        with open(name) as f:
            doc = json.load(f)
        if validator:
            out = ["%s: %s" % ("/".join(str(p) for p in e.absolute_path), e.message) for e in validator.iter_errors(doc)]
        else:
            out = []
            builtin(schema, schema, doc, "$", out)
        for o in out[:20]:
            print("%s: %s" % (name, o))
        print("%s: %s" % (name, "ok" if not out else "%d problems" % len(out)))
        bad += bool(out)
    print("validator: %s" % ("jsonschema" if validator else "builtin"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
