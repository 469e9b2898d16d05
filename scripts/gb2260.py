#!/usr/bin/env python3
"""Builds model/ident/data/divisions.tsv, the GB/T 2260 administrative
division codes Jutong checks identifiers and division fields against
(docs/catalog.md, "Division codes"), from two public, MIT-licensed npm
packages:

  gb2260@0.6.0        (github.com/cn/GB2260: the Ministry of Civil Affairs'
                      published code lists, 19 revisions 2002-12 .. 2016-07)
  china-division@2.7.0 (github.com/modood/Administrative-divisions-of-China:
                      the National Bureau of Statistics' 2023 statistical
                      division codes, as of 2023-06-30)

Usage: npm pack gb2260@0.6.0 china-division@2.7.0, untar both, then
  python3 scripts/gb2260.py GB2260_PACKAGE_DIR CHINA_DIVISION_PACKAGE_DIR > model/ident/data/divisions.tsv
"""
import json, os, sys

gb, cd = sys.argv[1], sys.argv[2]
seen = {}  # code -> [name, first, last]

def note(code, name, rev):
    e = seen.get(code)
    if e is None:
        seen[code] = [name, rev, rev]
        return
    if rev < e[1]:
        e[1] = rev
    if rev >= e[2]:
        e[2], e[0] = rev, name

for rev in json.load(open(os.path.join(gb, "lib", "revisions.json"))):
    for code, name in json.load(open(os.path.join(gb, "lib", rev + ".json"))).items():
        note(code, name, rev)
NBS = "202306"
for p in json.load(open(os.path.join(cd, "dist", "provinces.json"))):
    note(p["code"] + "0000", p["name"], NBS)
for c in json.load(open(os.path.join(cd, "dist", "cities.json"))):
    note(c["code"] + "00", c["name"], NBS)
for a in json.load(open(os.path.join(cd, "dist", "areas.json"))):
    note(a["code"], a["name"], NBS)

print("# GB/T 2260 administrative division codes: code, name (latest), first and last revision listing it (YYYYMM).")
print("# Sources: the Ministry of Civil Affairs' lists 200212-201607 (npm gb2260@0.6.0, github.com/cn/GB2260, MIT);")
print("# the National Bureau of Statistics' 2023 statistical division codes as of 2023-06-30 (npm china-division@2.7.0, MIT).")
print("# A code whose last revision is " + NBS + " is current. Built by scripts/gb2260.py.")
for code in sorted(seen):
    if len(code) == 6 and code.isdigit():
        name, first, last = seen[code]
        print(f"{code}\t{name}\t{first}\t{last}")
