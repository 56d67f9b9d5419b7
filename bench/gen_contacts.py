"""Seeded generator of a HubSpot UI CSV contacts export, for the benchmarks (see docs/BENCHMARKS.md).

The file looks like what HubSpot's "Export" button produces for contacts: UTF-8, every field double-quoted,
15 columns with their UI labels, dates as ``YYYY-MM-DD HH:MM`` (UTC), dropdowns as their labels. It carries
the defects a real export carries, in fixed proportions of the total row count:

- ~2% exact duplicate rows (the same record exported twice),
- ~5% later versions of earlier records (same Record ID, later Last Modified Date, one changed field),
- ~1% bad rows: an invalid email, an unparseable date (``31/02/2024``) or an unknown Lifecycle Stage.
  Bad rows are always the only row of their Record ID, so "which version wins" never depends on a bad row.

Rows are shuffled, so duplicates and updates are spread through the file. 1,000,000 rows give 930,000
distinct Record IDs and ~195 MiB; everything is vectorised (numpy + pyarrow) so that takes a few seconds.

``--changed-from FILE --change-rate 0.05`` instead writes a copy of FILE in which 5% of the distinct valid
records got a newer Last Modified Date and one changed value (Phone Number or Lifecycle Stage) on their
winning row(s): the input of the "replay with 5% changed" measurement. A merge that writes only what
changed must write exactly that many rows.

Each output gets a ``<file>.meta.json`` sidecar with the counts above (run.py reports them).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# Bump when the output for a given (seed, rows) changes: run.py keys its cache on it.
GEN_VERSION = 2

HEADER = [
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Contact owner",
    "Primary Associated Company ID",
    "Last Activity Date",
    "Lead Status",
    "Marketing contact status",
    "Create Date",
    "Associated Company",
    "Lifecycle Stage",
    "Country/Region",
    "Last Modified Date",
]

# fmt: off
LIFECYCLE = [
    "Subscriber",
    "Lead",
    "Marketing Qualified Lead",
    "Sales Qualified Lead",
    "Opportunity",
    "Customer",
    "Evangelist",
    "Other",
]
LIFECYCLE_P = [0.18, 0.30, 0.12, 0.08, 0.07, 0.17, 0.03, 0.05]
LEAD_STATUS = ["", "New", "Open", "In Progress", "Open Deal", "Unqualified", "Attempted to Contact", "Connected", "Bad Timing"]
LEAD_STATUS_P = [0.30, 0.18, 0.12, 0.08, 0.05, 0.09, 0.08, 0.06, 0.04]
MARKETING = ["Marketing contact", "Non-marketing contact"]

# (display name, ASCII lower-case form used in email addresses)
FIRST_NAMES = [
    ("James", "james"), ("Mary", "mary"), ("John", "john"), ("Patricia", "patricia"), ("Robert", "robert"),
    ("Jennifer", "jennifer"), ("Michael", "michael"), ("Linda", "linda"), ("William", "william"),
    ("Elizabeth", "elizabeth"), ("David", "david"), ("Barbara", "barbara"), ("Richard", "richard"),
    ("Susan", "susan"), ("Joseph", "joseph"), ("Jessica", "jessica"), ("Thomas", "thomas"), ("Sarah", "sarah"),
    ("Charles", "charles"), ("Karen", "karen"), ("Daniel", "daniel"), ("Nancy", "nancy"), ("Matthew", "matthew"),
    ("Lisa", "lisa"), ("Anthony", "anthony"), ("Betty", "betty"), ("Mark", "mark"), ("Sandra", "sandra"),
    ("Paul", "paul"), ("Ashley", "ashley"), ("Steven", "steven"), ("Emily", "emily"), ("Andrew", "andrew"),
    ("Donna", "donna"), ("Joshua", "joshua"), ("Michelle", "michelle"), ("Kevin", "kevin"), ("Laura", "laura"),
    ("Brian", "brian"), ("Anna", "anna"), ("George", "george"), ("Emma", "emma"), ("Noah", "noah"),
    ("Olivia", "olivia"), ("Liam", "liam"), ("Sophia", "sophia"), ("Lucas", "lucas"), ("Mia", "mia"),
    ("José", "jose"), ("María", "maria"), ("Chloé", "chloe"), ("Zoë", "zoe"), ("Renée", "renee"),
    ("François", "francois"), ("Søren", "soren"), ("Łukasz", "lukasz"), ("Jürgen", "jurgen"), ("Björn", "bjorn"),
    ("Ines", "ines"), ("Marco", "marco"), ("Giulia", "giulia"), ("Hans", "hans"), ("Ingrid", "ingrid"),
    ("Yuki", "yuki"), ("Hiro", "hiro"), ("Wei", "wei"), ("Mei", "mei"), ("Priya", "priya"), ("Arjun", "arjun"),
    ("Fatima", "fatima"), ("Omar", "omar"), ("Aisha", "aisha"), ("Kwame", "kwame"), ("Lars", "lars"),
    ("Sven", "sven"), ("Nora", "nora"), ("Pedro", "pedro"), ("Lucía", "lucia"), ("Ana", "ana"), ("Tomás", "tomas"),
]
LAST_NAMES = [
    ("Smith", "smith"), ("Johnson", "johnson"), ("Williams", "williams"), ("Brown", "brown"), ("Jones", "jones"),
    ("Garcia", "garcia"), ("Miller", "miller"), ("Davis", "davis"), ("Rodriguez", "rodriguez"),
    ("Martinez", "martinez"), ("Hernandez", "hernandez"), ("Lopez", "lopez"), ("Gonzalez", "gonzalez"),
    ("Wilson", "wilson"), ("Anderson", "anderson"), ("Thomas", "thomas"), ("Taylor", "taylor"), ("Moore", "moore"),
    ("Jackson", "jackson"), ("Martin", "martin"), ("Lee", "lee"), ("Perez", "perez"), ("Thompson", "thompson"),
    ("White", "white"), ("Harris", "harris"), ("Sanchez", "sanchez"), ("Clark", "clark"), ("Ramirez", "ramirez"),
    ("Lewis", "lewis"), ("Robinson", "robinson"), ("Walker", "walker"), ("Young", "young"), ("Allen", "allen"),
    ("King", "king"), ("Wright", "wright"), ("Scott", "scott"), ("Torres", "torres"), ("Nguyen", "nguyen"),
    ("Hill", "hill"), ("Flores", "flores"), ("Green", "green"), ("Adams", "adams"), ("Nelson", "nelson"),
    ("Baker", "baker"), ("Hall", "hall"), ("Rivera", "rivera"), ("Campbell", "campbell"), ("Mitchell", "mitchell"),
    ("O'Brien", "obrien"), ("Müller", "muller"), ("Schmidt", "schmidt"), ("Schneider", "schneider"),
    ("Fischer", "fischer"), ("Dubois", "dubois"), ("Lefèvre", "lefevre"), ("Rossi", "rossi"), ("Russo", "russo"),
    ("Novák", "novak"), ("Kowalski", "kowalski"), ("Nowak", "nowak"), ("Jensen", "jensen"), ("Hansen", "hansen"),
    ("Larsen", "larsen"), ("Sato", "sato"), ("Suzuki", "suzuki"), ("Tanaka", "tanaka"), ("Wang", "wang"),
    ("Li", "li"), ("Zhang", "zhang"), ("Chen", "chen"), ("Patel", "patel"), ("Sharma", "sharma"), ("Khan", "khan"),
    ("Silva", "silva"), ("Santos", "santos"), ("Oliveira", "oliveira"), ("Peña", "pena"), ("Ibáñez", "ibanez"),
    ("Øster", "oster"), ("Åberg", "aberg"), ("Yılmaz", "yilmaz"), ("Mensah", "mensah"), ("Okafor", "okafor"),
]
FREE_MAIL = ["gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de"]
COMPANY_A = [
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Hooli", "Vandelay", "Soylent",
    "Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Proseware", "Adatum", "Fourth Coffee",
    "Blue Yonder", "Alpine Ski", "Cyberdyne", "Tyrell", "Massive Dynamic", "Oscorp", "Aperture", "Black Mesa",
    "Gringotts", "Monarch", "Pied Piper", "Dunder Mifflin", "Sterling Cooper", "Bluth", "Prestige Worldwide",
    "Nordlicht", "Sonnenschein", "Étoile", "Aurora", "Vertex", "Summit", "Harbor", "Pinnacle", "Cascade",
]
COMPANY_B = ["Inc.", "LLC", "GmbH", "Ltd", "SA", "S.r.l.", "Group", "Labs", "Systems", "Industries", "Partners", "AG"]
COUNTRIES = [
    "United States", "United Kingdom", "Germany", "France", "Canada", "Australia", "Netherlands", "Spain",
    "Italy", "Sweden", "Denmark", "Norway", "Poland", "Ireland", "Switzerland", "Belgium", "Austria", "Brazil",
    "Mexico", "India", "Japan", "Singapore", "South Africa", "Nigeria", "Türkiye", "Côte d'Ivoire", "Portugal",
    "New Zealand", "Finland", "Czechia",
]
COUNTRIES_P = np.array([30, 10, 9, 7, 6, 4, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 0.5, 1, 1, 1, 1.5])
OWNERS = [
    "Alex Morgan", "Jordan Lee", "Taylor Brooks", "Sam Rivera", "Casey Nguyen", "Riley Patel", "Jamie Fischer",
    "Morgan Dubois", "Avery Tanaka", "Quinn O'Connor", "Dana Kowalski", "Chris Jensen", "Robin Santos",
    "Kim Schneider", "Pat Okafor", "Lena Hoffmann", "Marta García", "Noé Lambert", "Eva Lindqvist", "Raj Mehta",
]
# fmt: on

T0 = np.datetime64("2019-01-01T00:00", "m")  # first Create Date
DAYS = 2600  # the span of dates the file can contain (to mid-2026)
# fmt: off
PHONE_CC = ["1", "1", "1", "1", "44", "49", "33", "61"]  # "+1 555-0100" shaped, a few non-US
TLDS = [".com", ".io", ".de", ".co.uk", ".fr", ".net"]
COMPANY_DOMAINS = [c.lower().replace(" ", "").replace("é", "e") for c in COMPANY_A]
INVALID_EMAILS = ["not-an-email", "jane.doe@", "john.smith at example.com", "@example.com", "sales@@example.com"]
# fmt: on


def _vocab(values: list[str]) -> pa.Array:
    assert all('"' not in v for v in values)
    return pa.array(values, pa.string())


_DAY_STRINGS = pa.array(
    np.datetime_as_string(T0.astype("datetime64[D]") + np.arange(DAYS + 400)), pa.string()
)
_HM_STRINGS = pa.array([f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)], pa.string())


def _fmt_minutes(minutes: np.ndarray) -> pa.Array:
    """Minutes since T0 -> 'YYYY-MM-DD HH:MM' (via small lookup tables: much faster than strftime)."""
    day = pa.array(minutes // 1440)
    hm = pa.array(minutes % 1440)
    return pc.binary_join_element_wise(_DAY_STRINGS.take(day), _HM_STRINGS.take(hm), " ")


def _digits(values: np.ndarray, width: int = 0) -> pa.Array:
    s = pc.cast(pa.array(values, pa.int64()), pa.string())
    return pc.utf8_lpad(s, width, "0") if width else s


def _phones(rng: np.random.Generator, n: int) -> pa.Array:
    cc = _vocab(PHONE_CC).take(pa.array(rng.integers(0, len(PHONE_CC), n)))
    return pc.binary_join_element_wise(
        pa.scalar("+"), cc, pa.scalar(" "), _digits(rng.integers(200, 1000, n)), pa.scalar("-"),
        _digits(rng.integers(0, 10000, n), 4), "",
    )  # fmt: skip


def _where(mask: np.ndarray, a: pa.Array, b: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask), a, b)


def _take(rec: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in rec.items()}


def _unique_email_suffixes(rec: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A number after first.last (-1: none) such that no two records share an address.

    HubSpot keeps one contact per email address (the warehouse checks it too), so a realistic export has
    unique emails. Records with the same first.last@domain are numbered by rank: rank r gets a number in
    [10r, 10r + 9] (rank 0 goes without one 55% of the time), which keeps every address distinct.
    """
    n = len(rec["first"])
    first_ascii = np.unique([a for _, a in FIRST_NAMES], return_inverse=True)[1]
    last_ascii = np.unique([a for _, a in LAST_NAMES], return_inverse=True)[1]
    dom = rec["email_dom"]
    corp = len(FREE_MAIL) + (rec["email_co"] % len(COMPANY_A)) * len(TLDS) + (-1 - dom)
    dom_id = np.where(dom >= 0, dom, corp)
    n_dom = len(FREE_MAIL) + len(COMPANY_A) * len(TLDS)
    key = (first_ascii[rec["first"]] * (last_ascii.max() + 1) + last_ascii[rec["last"]]) * n_dom + dom_id
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    numbered = (rank > 0) | (rng.random(n) < 0.45)
    return np.where(numbered, rank * 10 + rng.integers(0, 10, n), -1)


def generate(rows: int, seed: int) -> tuple[dict[str, pa.Array], dict[str, int]]:
    """Build the columns (as pyarrow string arrays, in file order) and the counts for the sidecar.

    Every row is first a set of numeric codes (numpy), duplicated/updated/shuffled as numbers; the strings
    are built once at the end from small vocabularies, which keeps 1M rows to a few seconds.
    """
    rng = np.random.default_rng(seed)
    n_dup = round(rows * 0.02)
    n_upd = round(rows * 0.05)
    n_base = rows - n_dup - n_upd
    n_bad = round(rows * 0.01)
    n_companies = max(10, n_base // 8)

    # --- one row per distinct record -----------------------------------------------------------------
    created = rng.integers(0, (DAYS - 500) * 1440, n_base)
    modified = created + rng.integers(0, 400 * 1440, n_base)
    rec: dict[str, np.ndarray] = {
        "rid": 10_000_001 + np.cumsum(rng.integers(1, 1200, n_base)),
        "first": rng.integers(0, len(FIRST_NAMES), n_base),
        "last": rng.integers(0, len(LAST_NAMES), n_base),
        # >= 0: index into FREE_MAIL; < 0: company domain with TLD index -1 - value
        "email_dom": np.where(
            rng.random(n_base) < 0.6,
            rng.integers(0, len(FREE_MAIL), n_base),
            -1 - rng.integers(0, len(TLDS), n_base),
        ),
        "company": np.where(rng.random(n_base) < 0.6, rng.integers(0, n_companies, n_base), -1),
        "phone_cc": rng.integers(0, len(PHONE_CC), n_base),
        "phone_area": rng.integers(200, 1000, n_base),
        "phone_line": np.where(rng.random(n_base) < 0.6, rng.integers(0, 10000, n_base), -1),
        "owner": rng.integers(0, len(OWNERS), n_base),
        "lifecycle": rng.choice(len(LIFECYCLE), n_base, p=LIFECYCLE_P),
        "lead": rng.choice(len(LEAD_STATUS), n_base, p=LEAD_STATUS_P),
        "marketing": (rng.random(n_base) < 0.35).astype(np.int64),
        "country": rng.choice(len(COUNTRIES), n_base, p=COUNTRIES_P / COUNTRIES_P.sum()),
        "created": created,
        "activity": np.where(
            rng.random(n_base) < 0.45,
            created + (rng.random(n_base) * (modified - created)).astype(np.int64),
            -1,
        ),
        "modified": modified,
    }
    # The email's company domain follows the associated company when there is one.
    rec["email_co"] = np.where(rec["company"] >= 0, rec["company"], rng.integers(0, n_companies, n_base))
    rec["email_sfx"] = _unique_email_suffixes(rec, rng)

    # --- later versions of earlier records: later Last Modified Date, one changed field ---------------
    single_row = np.ones(n_base, dtype=bool)  # records that keep exactly one row (bad rows come from these)
    upd_src = rng.choice(n_base, n_upd, replace=False)
    single_row[upd_src] = False
    upd = _take(rec, upd_src)
    upd["modified"] = upd["modified"] + rng.integers(60, 90 * 1440, n_upd)
    kind = rng.random(n_upd)  # < .5 lifecycle, < .8 phone, else lead status
    m = kind < 0.5
    upd["lifecycle"][m] = (upd["lifecycle"][m] + rng.integers(1, len(LIFECYCLE), m.sum())) % len(LIFECYCLE)
    m = (kind >= 0.5) & (kind < 0.8)
    upd["phone_cc"][m] = rng.integers(0, len(PHONE_CC), m.sum())
    upd["phone_area"][m] = rng.integers(200, 1000, m.sum())
    upd["phone_line"][m] = (np.maximum(upd["phone_line"][m], 0) + rng.integers(1, 10000, m.sum())) % 10000
    m = kind >= 0.8
    upd["lead"][m] = (upd["lead"][m] + rng.integers(1, len(LEAD_STATUS), m.sum())) % len(LEAD_STATUS)
    upd["lead"][m & (upd["lead"] == 0)] = 1  # a status was set, not cleared
    rec = {k: np.concatenate([rec[k], upd[k]]) for k in rec}
    base_of_row = np.concatenate([np.arange(n_base), upd_src])

    # --- exact duplicates of any row so far -----------------------------------------------------------
    dup_rows = rng.choice(n_base + n_upd, n_dup, replace=False)
    single_row[base_of_row[dup_rows]] = False
    rec = _take(rec, np.concatenate([np.arange(n_base + n_upd), dup_rows]))

    # --- bad rows: only records that have exactly one row (their row index == their base index) -------
    bad = rng.choice(np.flatnonzero(single_row), min(n_bad, int(single_row.sum())), replace=False)
    rec["bad"] = np.full(rows, -1)
    # 0: invalid email, 1/2/3: '31/02/2024' in Create/Last Modified/Last Activity Date, 4: unknown stage
    rec["bad"][bad] = rng.choice(5, len(bad), p=[1 / 3, 1 / 9, 1 / 9, 1 / 9, 1 / 3])

    rec = _take(rec, rng.permutation(rows))
    return _strings(rec, rng), {
        "rows": rows,
        "distinct_ids": n_base,
        "exact_duplicate_rows": n_dup,
        "update_rows": n_upd,
        "bad_rows": len(bad),
        "valid_distinct_ids": n_base - len(bad),
    }


def _strings(rec: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, pa.Array]:
    """Numeric codes -> the export's 15 string columns."""
    n = len(rec["rid"])
    empty = pa.scalar("")

    def v(values: list[str], codes: np.ndarray) -> pa.Array:
        return _vocab(values).take(pa.array(codes))

    def opt(mask: np.ndarray, a: pa.Array) -> pa.Array:
        return _where(mask, a, empty)

    has_co = rec["company"] >= 0
    co = np.maximum(rec["company"], 0)
    company_name = pc.binary_join_element_wise(
        v(COMPANY_A, co % len(COMPANY_A)), v(COMPANY_B, (co // len(COMPANY_A)) % len(COMPANY_B)), " "
    )
    local = pc.binary_join_element_wise(
        v([a for _, a in FIRST_NAMES], rec["first"]), v([a for _, a in LAST_NAMES], rec["last"]), "."
    )
    sfx = rec["email_sfx"]
    local = _where(sfx >= 0, pc.binary_join_element_wise(local, _digits(np.maximum(sfx, 0)), ""), local)
    dom = rec["email_dom"]
    corp = pc.binary_join_element_wise(
        v(COMPANY_DOMAINS, rec["email_co"] % len(COMPANY_A)), v(TLDS, np.maximum(-1 - dom, 0)), ""
    )
    email = pc.binary_join_element_wise(local, _where(dom >= 0, v(FREE_MAIL, np.maximum(dom, 0)), corp), "@")
    line = rec["phone_line"]
    phone = pc.binary_join_element_wise(
        pa.scalar("+"), v(PHONE_CC, rec["phone_cc"]), pa.scalar(" "), _digits(rec["phone_area"]),
        pa.scalar("-"), _digits(np.maximum(line, 0), 4), "",
    )  # fmt: skip
    act = rec["activity"]
    bad = rec["bad"]
    cols = {
        "Record ID": _digits(rec["rid"]),
        "First Name": v([f for f, _ in FIRST_NAMES], rec["first"]),
        "Last Name": v([x for x, _ in LAST_NAMES], rec["last"]),
        "Email": email,
        "Phone Number": opt(line >= 0, phone),
        "Contact owner": v(OWNERS, rec["owner"]),
        "Primary Associated Company ID": opt(has_co, _digits(5_000_001 + co * 7)),
        "Last Activity Date": opt(act >= 0, _fmt_minutes(np.maximum(act, 0))),
        "Lead Status": v(LEAD_STATUS, rec["lead"]),
        "Marketing contact status": v(MARKETING, rec["marketing"]),
        "Create Date": _fmt_minutes(rec["created"]),
        "Associated Company": opt(has_co, company_name),
        "Lifecycle Stage": v(LIFECYCLE, rec["lifecycle"]),
        "Country/Region": v(COUNTRIES, rec["country"]),
        "Last Modified Date": _fmt_minutes(rec["modified"]),
    }
    bad_values = {
        0: ("Email", INVALID_EMAILS),
        1: ("Create Date", ["31/02/2024"]),
        2: ("Last Modified Date", ["31/02/2024"]),
        3: ("Last Activity Date", ["31/02/2024"]),
        4: ("Lifecycle Stage", ["Prospect"]),
    }
    for code, (col, values) in bad_values.items():
        cols[col] = _where(bad == code, v(values, rng.integers(0, len(values), n)), cols[col])
    return cols


def write_csv(cols: dict[str, pa.Array], path: Path, chunk_rows: int = 500_000) -> int:
    """Write every field double-quoted ('"' doubled inside), UTF-8, '\\n' line ends. Returns bytes written."""
    names = list(cols)
    n = len(cols[names[0]])
    written = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        head = ",".join(f'"{h}"' for h in names) + "\n"
        written += f.write(head.encode("utf-8"))
        for start in range(0, n, chunk_rows):
            parts = [pc.replace_substring(cols[c].slice(start, chunk_rows), '"', '""') for c in names]
            joined = pc.binary_join_element_wise(*parts, '","')
            lines = pc.binary_join_element_wise(pa.scalar('"'), joined, pa.scalar('"\n'), "")
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
            lo, hi = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
            written += f.write(memoryview(lines.buffers()[2])[lo:hi])
    tmp.replace(path)
    return written


def read_csv_strings(path: Path) -> dict[str, pa.Array]:
    """Read an export back with every column as a string ('' stays '')."""
    with open(path, encoding="utf-8") as f:
        header = next(csv.reader(f))
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            column_types={h: pa.string() for h in header}, strings_can_be_null=False
        ),
    )
    return {h: table.column(h).combine_chunks() for h in header}


VALID_EMAIL = r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$"
VALID_DATE = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"


def make_changed(source: Path, rate: float, seed: int) -> tuple[dict[str, pa.Array], dict[str, int]]:
    """Copy of ``source`` where ``rate`` of the distinct valid records got a newer version."""
    rng = np.random.default_rng(seed + 1_000_003)
    cols = read_csv_strings(source)
    n = len(cols["Record ID"])
    ids = pc.cast(cols["Record ID"], pa.int64()).to_numpy()
    lmd = cols["Last Modified Date"]
    lmd_ok = pc.match_substring_regex(lmd, VALID_DATE)
    lmd_ts = pc.strptime(
        _where(lmd_ok.to_numpy(zero_copy_only=False), lmd, pa.scalar("1970-01-01 00:00")),
        format="%Y-%m-%d %H:%M",
        unit="s",
    )
    lmd_m = pc.cast(lmd_ts, pa.int64()).to_numpy() // 60
    row_ok = (
        lmd_ok.to_numpy(zero_copy_only=False)
        & pc.match_substring_regex(cols["Email"], VALID_EMAIL).to_numpy(zero_copy_only=False)
        & pc.match_substring_regex(cols["Create Date"], VALID_DATE).to_numpy(zero_copy_only=False)
        & pc.or_(
            pc.equal(cols["Last Activity Date"], ""),
            pc.match_substring_regex(cols["Last Activity Date"], VALID_DATE),
        ).to_numpy(zero_copy_only=False)
        & pc.is_in(cols["Lifecycle Stage"], value_set=pa.array(LIFECYCLE)).to_numpy(zero_copy_only=False)
    )
    # Winning row(s) of each id: the latest Last Modified Date (exact duplicates of it win together).
    order = np.lexsort((lmd_m, ids))
    sid, sm = ids[order], lmd_m[order]
    last_of_group = np.r_[sid[1:] != sid[:-1], True]
    uniq_ids = sid[last_of_group]
    win_m = sm[last_of_group]
    group_of_row = np.searchsorted(uniq_ids, ids)
    is_winner = lmd_m == win_m[group_of_row]
    # An id is eligible when all its winning rows are valid (bad rows are single-row ids anyway).
    winner_bad = np.zeros(len(uniq_ids), dtype=bool)
    np.logical_or.at(winner_bad, group_of_row[is_winner], ~row_ok[is_winner])
    eligible = np.flatnonzero(~winner_bad)
    n_change = round(len(eligible) * rate)
    chosen = np.zeros(len(uniq_ids), dtype=bool)
    chosen[rng.choice(eligible, n_change, replace=False)] = True
    # Per chosen id: new timestamp and which field changes, decided once so duplicate rows stay identical.
    g_new_m = win_m + rng.integers(60, 30 * 1440, len(uniq_ids))
    g_kind = rng.random(len(uniq_ids)) < 0.5  # True: Phone Number, False: Lifecycle Stage
    g_phone = _phones(rng, len(uniq_ids))
    g_shift = rng.integers(1, len(LIFECYCLE), len(uniq_ids))

    rows = chosen[group_of_row] & is_winner
    g = group_of_row
    t0_m = (T0 - np.datetime64("1970-01-01T00:00", "m")).astype(np.int64)
    new_lmd_str = _fmt_minutes(np.where(rows, g_new_m[g] - t0_m, 0))
    cols["Last Modified Date"] = _where(rows, new_lmd_str, lmd)
    phone_rows = rows & g_kind[g]
    new_phone = g_phone.take(pa.array(g))
    same = pc.equal(new_phone, cols["Phone Number"]).to_numpy(zero_copy_only=False)
    new_phone = _where(same, pc.binary_join_element_wise(new_phone, pa.scalar("1"), ""), new_phone)
    cols["Phone Number"] = _where(phone_rows, new_phone, cols["Phone Number"])
    stage_rows = rows & ~g_kind[g]
    cur = pc.index_in(cols["Lifecycle Stage"], value_set=pa.array(LIFECYCLE)).fill_null(0).to_numpy()
    new_stage = _vocab(LIFECYCLE).take(pa.array((cur + g_shift[g]) % len(LIFECYCLE)))
    cols["Lifecycle Stage"] = _where(stage_rows, new_stage, cols["Lifecycle Stage"])
    counts = {
        "rows": n,
        "distinct_ids": len(uniq_ids),
        "changed_ids": int(n_change),
        "changed_rows": int(rows.sum()),
        "change_rate": rate,
    }
    return cols, counts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=None, help="output CSV (default: contacts-<seed>-<rows>.csv)")
    ap.add_argument("--changed-from", type=Path, default=None, help="write a copy of this file with changes")
    ap.add_argument("--change-rate", type=float, default=0.05)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.changed_from:
        cols, counts = make_changed(args.changed_from, args.change_rate, args.seed)
        out = args.out or args.changed_from.with_name(
            args.changed_from.stem + f"-changed{args.change_rate:g}.csv"
        )
    else:
        cols, counts = generate(args.rows, args.seed)
        out = args.out or Path(f"contacts-{args.seed}-{args.rows}.csv")
    t1 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    size = write_csv(cols, out)
    t2 = time.perf_counter()
    meta = {
        **counts,
        "seed": args.seed,
        "gen_version": GEN_VERSION,
        "bytes": size,
        "sha256": _sha256(out),
        "changed_from": args.changed_from.name if args.changed_from else None,
        "generate_s": round(t1 - t0, 3),
        "write_s": round(t2 - t1, 3),
    }
    Path(str(out) + ".meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"file": str(out), **meta}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
