"""One verdict per subsection: unchecked, checked, unconditional or not-kvm."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from itertools import product

from .capabilities import Capabilities, Probe
from .compat import CompatIndex, CompatMitigation
from .facts.model import Condition, Description, Expression, Function, Guard, VMStateField
from .profile import CpuModel
from .put_path import Handoff
from .record import Record

UNCHECKED = "unchecked"
CHECKED = "checked"
UNCONDITIONAL = "unconditional"
NOT_KVM = "not-kvm"
VERDICTS = (UNCHECKED, CHECKED, UNCONDITIONAL, NOT_KVM)

# Above this many distinct capability conditions on one field we stop
# enumerating truth tables and call the field conditional.
_MAX_ATOMS = 12
# `VMSTATE_INT32_EQUAL(env.nb_tlb, ...)`: the loader compares the value with the
# destination's own and fails on a mismatch, so nothing of it can be dropped.
_EQUAL_FIELD = re.compile(r"_EQUAL(_V)?$")


class Consumer(Record):
    field: str  # the subsection's field as written, e.g. env.msr_smi_count
    handoff: Handoff
    guards: tuple[str, ...]
    # Flags, accessors and members as the guard writes them (`has_xsave`,
    # `kvm_has_vcpu_events()`, `csr_cfg->supported`).
    capability_guards: tuple[str, ...]
    probes: tuple[Probe, ...] = ()  # what those guards stand for: KVM_CAP_TSC_CONTROL behind set_ioctl


class ModelCheck(Record):
    """A CPU-model check at realize that stands in for a post_load.

    needed() tests guest CPU features; a destination with the same CPU model
    refuses to start unless its host offers them, and such a host passes the
    put guards naming `guards`. Not a post_load: it holds only while both ends
    run with a CPU model (s390x: not for `-cpu host` without KVM CPU-model
    support, nor for machine types that predate CPU models)."""

    function: str  # check_compatibility
    location: tuple[str, int] | None  # where it is defined, when the profile's files have it
    features: tuple[str, ...]  # what needed() tests: S390_FEAT_VECTOR
    guards: tuple[str, ...]  # what those features make hold: KVM_SYNC_VRS

    def describe(self) -> str:
        """`CPU-model check check_compatibility() at realize (S390_FEAT_VECTOR -> KVM_SYNC_VRS)`."""
        pairs = ", ".join(f"{feature} -> {guard}" for feature, guard in zip(self.features, self.guards, strict=True))
        return f"CPU-model check {self.function}() at realize, not a post_load ({pairs})"


class SubsectionReport(Record):
    description: Description
    parent: Description
    ifdef: str | None
    fields: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    guarded_fields: tuple[str, ...]  # fields that reach KVM only behind a capability
    required: tuple[Probe, ...]  # probes those guards stand for
    post_load_checks: tuple[str, ...]  # capability symbols the post_loads test
    checking_post_load: str | None  # the post_load that covers the requirement
    compat: tuple[CompatMitigation, ...]
    verdict: str
    needed_at: tuple[str, int] | None = None  # where the needed() function is defined
    enclosing: tuple[str, ...] = ()  # symbols of the descriptions containing it, nearest first
    # Set when the verdict is `checked` because of the CPU model rather than a post_load.
    model_check: ModelCheck | None = None


@cache
def _shown(field: VMStateField) -> str:
    """How reports name a field: its path, or the temporary a VMSTATE_WITH_TMP goes through."""
    return field.path or field.embeds or field.macro


@cache  # the same few thousand paths are split again for every overlap test
def split_path(path: str) -> tuple[str, ...]:
    """`env.xmm_regs[i].ZMM_Q(2)` -> [env, xmm_regs, ZMM_Q]."""
    out: list[str] = []
    depth = 0
    current = ""
    for char in path.replace("->", "."):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif depth == 0:
            if char == ".":
                out.append(current)
                current = ""
            else:
                current += char
    out.append(current)
    return tuple(p for p in out if p)


def overlaps(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when one member path contains the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


class PathIndex:
    """Positions of member paths, to find those that `overlap` a given path
    without testing each: a CPU unit has hundreds of handoffs, and each field
    of each subsection asks which of them carry it."""

    def __init__(self, paths: Iterable[tuple[str, ...]] = ()) -> None:
        self._exact: dict[tuple[str, ...], list[int]] = {}  # path -> positions
        self._under: dict[tuple[str, ...], list[int]] = {}  # every prefix of a path -> positions
        self._size = 0
        for path in paths:
            self.add(path)

    def add(self, path: tuple[str, ...]) -> None:
        """Index `path` at the next position."""
        position, self._size = self._size, self._size + 1
        self._exact.setdefault(path, []).append(position)
        for n in range(len(path) + 1):
            self._under.setdefault(path[:n], []).append(position)

    def overlapping(self, path: tuple[str, ...]) -> set[int]:
        """Positions of the paths that contain `path` or that it contains:
        `X86CPU.env` (handed whole) and `X86CPU.env.xmm_regs.ZMM_Q` for `X86CPU.env.xmm_regs`."""
        found = set(self._under.get(path, ()))  # itself and those extending it
        for n in range(len(path)):
            found.update(self._exact.get(path[:n], ()))  # its proper prefixes
        return found


@cache
def path_indices(path: str) -> tuple[tuple[str, ...], ...]:
    """The subscripts after each member of `path`, aligned with split_path:
    `env.vregs[16][0]` -> [(), (16, 0)]."""
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    index = ""
    depth = 0
    member = ""
    for char in path.replace("->", "."):
        if char in "[(":
            depth += 1
            if depth == 1 and char == "[":
                index = ""
                continue
        elif char in "])":
            depth -= 1
            if depth == 0 and char == "]":
                current.append(index.strip())
                continue
        if depth == 1 and char != "(":
            index += char
        elif depth == 0:
            if char == ".":
                if member:
                    out.append(tuple(current))
                member, current = "", []
            else:
                member += char
    if member:
        out.append(tuple(current))
    return tuple(out)


# `env->vregs[i][1]`, `&s->regs[2]`: a variable, then members and subscripts only.
_MEMBER_CHAIN = re.compile(r"[&*\s]*(\w+(?:\s*(?:->|\.)\s*\w+|\s*\[[^\[\]]*\])*)\s*")


def handoff_indices(handoff: Handoff) -> tuple[tuple[str, ...], ...]:
    """The subscripts a handoff puts on its state path, aligned with split_path:
    its path's own (a profile accessor's `env.vregs[0..15][0]`), or those of the
    member chain it came from (`env->vregs[i][1]` on X86CPU.env.vregs gives
    [(), (), (i, 1)]); none when neither says."""
    own = path_indices(handoff.state_path)
    chain = _MEMBER_CHAIN.fullmatch(handoff.source)
    if any(own) or chain is None:
        return own
    text = "".join(chain.group(1).split()).replace("->", ".")
    members, indices = split_path(text), path_indices(text)
    path = split_path(handoff.state_path)
    # The chain's variable stands for the path's first members (env: X86CPU.env);
    # the members after it must be the path's last ones.
    rest = len(members) - 1
    if len(indices) != len(members) or indices[0] or rest >= len(path) or path[len(path) - rest :] != members[1:]:
        return own
    return ((),) * (len(path) - rest) + indices[1:]


def _index_range(index: str) -> tuple[int, int] | None:
    """`3` -> (3, 3), `0..15` -> (0, 15); None for a variable or `*`."""
    low, dots, high = index.partition("..")
    try:
        return (int(low, 0), int(high, 0)) if dots else (int(low, 0), int(low, 0))
    except ValueError:
        return None


def indices_meet(a: tuple[tuple[str, ...], ...], b: tuple[tuple[str, ...], ...]) -> bool:
    """False when two aligned paths name provably different array elements.

    Most handoff paths carry no subscripts (the extractor drops them), so they
    meet every element; a profile accessor may pin some
    (`get_freg` -> `env.vregs[0..15][0]`: only FP registers, element 0)."""
    for left, right in zip(a, b, strict=False):
        for x, y in zip(left, right, strict=False):
            rx, ry = _index_range(x), _index_range(y)
            if rx is not None and ry is not None and (rx[1] < ry[0] or ry[1] < rx[0]):
                return False
    return True


# A member chain as C writes it: `csr_cfg->supported`, `env->cpucfg[2]`, `kvm_v_vlenb.supported`.
_WRITTEN_CHAIN = re.compile(r"[A-Za-z_]\w*(?:\s*(?:\[[^\]]*\])*\s*(?:->|\.)\s*[A-Za-z_]\w*)+")
_INDEX = re.compile(r"\[[^\]]*\]")


def written_name(key: str, text: str) -> str:
    """How the condition `text` spells the subject `key`: a member key's whole chain
    (`field:KVMCPUConfig.supported` in `csr_cfg->supported` is `csr_cfg->supported`,
    not `supported`, which names nothing a reader can find); else `short_name(key)`."""
    kind, _, rest = key.partition(":")
    if kind != "field" or "." not in rest:
        return short_name(key)
    members = rest.split(".")[1:]
    best = ""
    for match in _WRITTEN_CHAIN.finditer(text):
        chain = "".join(match.group().split())
        names = re.split(r"->|\.", _INDEX.sub("", chain))
        if names[-len(members) :] == members and len(chain) > len(best):
            best = _INDEX.sub("", chain)
    return best or short_name(key)


def short_name(key: str) -> str:
    """Readable form of a symbol key: has_xsave, kvm_max_nested_state_length(), env.nested_state."""
    kind, _, rest = key.partition(":")
    if kind == "call":
        return f"{rest}()"
    if kind == "field":
        return rest.split(".", 1)[1] if "." in rest else rest
    return rest.rsplit(":", 1)[-1]


class Assessor:
    def __init__(
        self,
        descriptions: Mapping[str, Description],
        handoffs: Iterable[Handoff],
        functions: Mapping[str, list[Function]],  # definitions by name (put_path.index_functions)
        capabilities: Capabilities,
        compat: CompatIndex,
        failure_calls: frozenset[str] = frozenset(),
        assumed_calls: frozenset[str] = frozenset(),
        codec_state: Mapping[str, tuple[str, ...]] | None = None,
        cpu_model: CpuModel | None = None,
        model_check_at: tuple[str, int] | None = None,
    ) -> None:
        self.descriptions = descriptions
        self.handoffs = [(h, split_path(h.state_path), handoff_indices(h)) for h in handoffs]
        self._handoff_paths = PathIndex(path for _, path, _ in self.handoffs)
        # What a handoff's guards say, by its position: the same handoff serves many fields.
        self._guard_summaries: dict[int, tuple[tuple[str, ...], tuple[str, ...], frozenset[Probe]]] = {}
        # A post_load's verification by its name: most subsections share their CPU's.
        self._verified: dict[str, tuple[list[str], set[str]]] = {}
        # The same guard conditions recur on many handoffs, and the same handoffs on many fields.
        self._subjects: dict[Expression, list[str]] = {}
        self._delivered: dict[tuple[int, ...], bool] = {}
        self.functions = functions
        self.capabilities = capabilities
        self.compat = compat
        self.failure_calls = failure_calls
        self.assumed_calls = assumed_calls
        # VMStateInfo symbol -> the absolute state paths its get function writes.
        self.codec_state = codec_state or {}
        self.cpu_model = cpu_model
        self.model_check_at = model_check_at
        # Subsection symbol -> the description listing it, and the #if around the entry.
        self.listed_in: dict[str, tuple[Description, str | None]] = {}
        # Symbol -> the description containing it and the member path from that
        # description's opaque: "" for a subsection (same opaque), the field's
        # path for a description embedded by VMSTATE_STRUCT*.
        self.owners: dict[str, tuple[Description, str]] = {}
        for description in descriptions.values():
            for entry in description.subsections:
                self.listed_in.setdefault(entry.symbol, (description, entry.condition))
                self.owners.setdefault(entry.symbol, (description, ""))
        for description in descriptions.values():
            for field in description.fields:
                if field.embeds:
                    self.owners.setdefault(field.embeds, (description, field.path))

    # -- structure ---------------------------------------------------------

    def _owner_chain(self, symbol: str) -> list[tuple[Description, str]]:
        """Containing descriptions from the nearest outwards, with their member paths."""
        chain: list[tuple[Description, str]] = []
        seen = {symbol}
        current = symbol
        while current in self.owners:
            owner, path = self.owners[current]
            if owner.symbol in seen:
                break
            chain.append((owner, path))
            seen.add(owner.symbol)
            current = owner.symbol
        return chain

    def ancestors(self, symbol: str) -> list[Description]:
        """Descriptions whose post_load runs after this one's fields have loaded."""
        return [owner for owner, _ in self._owner_chain(symbol)]

    def base(self, symbol: str) -> tuple[str, ...]:
        """The absolute state path a description's fields are relative to, as members."""
        chain = self._owner_chain(symbol)
        root = chain[-1][0] if chain else self.descriptions[symbol]
        types = [f.struct_type for f in root.fields if f.struct_type]
        if not types and all(not path for _, path in chain):
            # A root with no fields, only subsections (hw/ppc/spapr_cpu_core.c
            # "spapr_cpu"), shares its opaque with them: the outermost of them
            # with fields names the type (for a VMSTATE_WITH_TMP temporary, the
            # subsection holding it rather than the temporary's own type).
            for owner in [*(d for d, _ in reversed(chain[:-1])), self.descriptions[symbol]]:
                types = [f.struct_type for f in owner.fields if f.struct_type]
                if types:
                    break
        parts = types[:1]
        for _, path in reversed(chain):
            parts.extend(split_path(path))
        return tuple(parts)

    # -- verdicts ----------------------------------------------------------

    def assess_all(self) -> list[SubsectionReport]:
        return [
            self.assess(self.descriptions[symbol], parent, condition)
            for symbol, (parent, condition) in self.listed_in.items()
            if symbol in self.descriptions
        ]

    def _carried(
        self, field: VMStateField, base: tuple[str, ...]
    ) -> list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]:
        """The absolute state paths a field carries, with the indices they pin."""
        if field.codec:  # a hand-written field: what its get function writes
            return [(split_path(p), path_indices(p)) for p in self.codec_state.get(field.codec, ())]
        if field.macro == "VMSTATE_WITH_TMP":
            # What the temporary's fields hold; the profile maps its type onto the state's.
            tmp = self.descriptions.get(field.embeds or "")
            return [carried for f in tmp.fields for carried in self._carried(f, base)] if tmp else []
        return [(base + split_path(field.path), ((),) * len(base) + path_indices(field.path))]

    def assess(self, description: Description, parent: Description, ifdef: str | None) -> SubsectionReport:
        base = self.base(description.symbol)
        consumers: list[Consumer] = []
        guarded: list[str] = []
        guarded_sites: list[list[tuple[Guard, ...]]] = []
        required: set[Probe] = set()
        for field in description.fields:
            if _EQUAL_FIELD.search(field.macro):
                continue
            positions = self._sites(self._carried(field, base))
            sites = [self.handoffs[i][0] for i in positions]
            for i in positions:
                consumers.append(self._consumer(_shown(field), i))
            if sites and not self._always_delivered_by(positions):
                guarded.append(_shown(field))
                guarded_sites.append([s.guards for s in sites])
                for i in positions:
                    required.update(self._guard_summary(i)[2])
        checks, covering = self._post_load_checks(description, {p.name for p in required})
        model = self._model_check(description, guarded_sites) if guarded and not covering else None
        if not consumers:
            verdict = NOT_KVM
        elif not guarded:
            verdict = UNCONDITIONAL
        elif covering or model:
            verdict = CHECKED
        else:
            verdict = UNCHECKED
        return SubsectionReport(
            description=description,
            parent=parent,
            ifdef=ifdef,
            fields=tuple(_shown(f) for f in description.fields),
            consumers=tuple(consumers),
            guarded_fields=tuple(guarded),
            required=tuple(sorted(required)),
            post_load_checks=checks,
            checking_post_load=covering,
            compat=self._compat(description),
            verdict=verdict,
            needed_at=self._defined_at(description.needed, description.path),
            enclosing=tuple(owner.symbol for owner in self.ancestors(description.symbol)),
            model_check=model,
        )

    def _sites(self, carried: list[tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]]) -> list[int]:
        """Positions, in order, of the handoffs that carry any of the `carried` paths."""
        found: set[int] = set()
        for absolute, indices in carried:
            found.update(
                i for i in self._handoff_paths.overlapping(absolute) if indices_meet(indices, self.handoffs[i][2])
            )
        return sorted(found)

    def _defined_at(self, name: str | None, near: str) -> tuple[str, int] | None:
        """Where function `name` is defined, preferring the file that names it."""
        if not name or name not in self.functions:
            return None
        candidates = sorted(self.functions[name], key=lambda f: (f.path != near, f.path, f.line))
        return candidates[0].path, candidates[0].line

    def _consumer(self, field: str, position: int) -> Consumer:
        guards, capability, probes = self._guard_summary(position)
        return Consumer(field, self.handoffs[position][0], guards, capability, tuple(sorted(probes)))

    def _guard_summary(self, position: int) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[Probe]]:
        """A handoff's guards as written, the capabilities they name, and the probes behind those."""
        if position in self._guard_summaries:
            return self._guard_summaries[position]
        handoff = self.handoffs[position][0]
        guards = tuple(g.describe() for g in handoff.guards)
        capability: list[str] = []
        probes: set[Probe] = set()
        for guard in handoff.guards:
            for atom in guard.condition.atoms():
                for key in self._capability_subjects(atom):
                    probes.update(self.capabilities.probes.get(key, ()))
                    name = written_name(key, atom.text)
                    if name not in capability:
                        capability.append(name)
        summary = self._guard_summaries[position] = (guards, tuple(capability), frozenset(probes))
        return summary

    def _needed_features(self, description: Description) -> set[str]:
        """CPU-model features every true return of needed() implies:
        `return s390_has_feat(S390_FEAT_VECTOR);` -> {S390_FEAT_VECTOR}.

        A return implies the features of the feature calls it makes when it is
        a plain conjunction; one with `||`, `!` or `?:` implies none."""
        model = self.cpu_model
        if model is None or not description.needed or not model.feature_calls:
            return set()
        definitions = self.functions.get(description.needed, [])
        definitions = [f for f in definitions if f.path == description.path] or definitions
        call = re.compile(rf"\b(?:{'|'.join(map(re.escape, sorted(model.feature_calls)))})\s*\(\s*(\w+)\s*\)")
        implied: set[str] | None = None
        for function in definitions:
            for returned in function.returns:
                text = returned.value.text.strip()
                if text in ("false", "0"):
                    continue  # never sends
                tested = set() if re.search(r"\|\||!(?!=)|\?", text) else set(call.findall(text))
                implied = tested if implied is None else implied & tested
        return implied or set()

    def _model_check(self, description: Description, fields: list[list[tuple[Guard, ...]]]) -> ModelCheck | None:
        """The CPU-model check that makes every guarded field reach KVM, if the profile has one.

        A capability atom naming only guard constants that needed()'s features
        guarantee (`can_sync_regs(cs, KVM_SYNC_VRS)` when needed() tests
        S390_FEAT_VECTOR) holds on any destination that starts; each field must
        then be delivered whatever the remaining capabilities are."""
        model = self.cpu_model
        features = self._needed_features(description)
        if model is None or not features:
            return None
        vouched = {model.guarantees[f] for f in features if f in model.guarantees}
        paired = set(model.guarantees.values())
        given: dict[str, bool] = {}
        used: set[str] = set()
        for sites in fields:
            for guards in sites:
                for guard in guards:
                    for leaf in guard.condition.leaves():
                        if leaf.atom is None or not self._capability_subjects(leaf.atom):
                            continue
                        named = set(leaf.atom.constants) & paired
                        if named and named <= vouched:
                            given[leaf.text] = True
                            used |= named
        if not given or not all(self._always_delivered(sites, given) for sites in fields):
            return None
        pairs = sorted((f, g) for f, g in model.guarantees.items() if f in features and g in used)
        return ModelCheck(
            model.check_function,
            self.model_check_at,
            tuple(f for f, _ in pairs),
            tuple(g for _, g in pairs),
        )

    def _capability_subjects(self, expression: Expression) -> list[str]:
        """`Capabilities.capability_subjects`, asked once per distinct expression."""
        if expression not in self._subjects:
            self._subjects[expression] = self.capabilities.capability_subjects(expression)
        return self._subjects[expression]

    def _always_delivered_by(self, positions: list[int]) -> bool:
        """`_always_delivered` for the sites of the handoffs at `positions`, decided once per set of them."""
        key = tuple(positions)
        if key not in self._delivered:
            self._delivered[key] = self._always_delivered([self.handoffs[i][0].guards for i in positions])
        return self._delivered[key]

    def _always_delivered(self, sites: list[tuple[Guard, ...]], given: Mapping[str, bool] | None = None) -> bool:
        """True when, whatever the host capabilities (those in `given` fixed), some site hands the field over."""
        given = given or {}
        atoms = sorted(
            {
                atom.text
                for guards in sites
                for guard in guards
                for atom in guard.condition.leaves()
                if atom.atom is not None and self._capability_subjects(atom.atom) and atom.text not in given
            }
        )
        if not atoms and not given:
            return True
        if len(atoms) > _MAX_ATOMS:
            return False
        for values in product((False, True), repeat=len(atoms)):
            assignment = {**given, **dict(zip(atoms, values, strict=True))}
            if not any(all(_guard_may_hold(g, assignment) for g in guards) for guards in sites):
                return False
        return True

    def _post_load_checks(self, description: Description, required: set[str]) -> tuple[tuple[str, ...], str | None]:
        """Capabilities the applicable post_loads verify, and the first post_load covering `required`."""
        names: list[str] = []
        covering = None
        for owner in [description, *self.ancestors(description.symbol)]:
            if not owner.post_load:
                continue
            if owner.post_load not in self._verified:
                self._verified[owner.post_load] = self._verified_by(owner.post_load)
            verified_names, probes = self._verified[owner.post_load]
            names.extend(n for n in verified_names if n not in names)
            if covering is None and required & probes:
                covering = owner.post_load
        return tuple(names), covering

    def _verified_by(self, entry: str) -> tuple[list[str], set[str]]:
        """What a post_load (and what it calls) verifies: a capability whose absence
        alone leads to a failure (a negative return, error_report and friends).

        `if (max_nested_state_len <= 0) { error_report(...); return -EINVAL; }`
        verifies; `if ((env->hflags & HF_GUEST_MASK) && !env->nested_state)` does
        not, because it fires only for some guest states.
        """
        names: list[str] = []
        probes: set[str] = set()
        verifying_keys: set[str] = set()
        calls_seen: list[str] = []
        stack: list[tuple[str, tuple[Guard, ...], tuple[str, ...]]] = [(entry, (), (entry,))]
        while stack:
            name, outer, chain = stack.pop()
            for function in self.functions.get(name, []):
                sites = [(*outer, *r.guards) for r in function.returns if r.value.text.startswith("-")]
                for call in function.calls:
                    calls_seen.append(call.callee)
                    if call.callee in self.failure_calls:
                        sites.append((*outer, *call.guards))
                    elif call.callee in self.functions and call.callee not in chain and len(chain) < 8:
                        stack.append((call.callee, (*outer, *call.guards), (*chain, call.callee)))
                for guards in sites:
                    for guard in guards:
                        for key in self._decisive_capabilities(guard):
                            verifying_keys.add(key)
        for key in sorted(verifying_keys):
            names.append(short_name(key))
            probes.update(p.name for p in self.capabilities.probes.get(key, ()))
        # Name the accessors the post_load reaches for those capabilities, too.
        for callee in calls_seen:
            key = f"call:{callee}"
            if {p.name for p in self.capabilities.probes.get(key, ())} & probes and short_name(key) not in names:
                names.append(short_name(key))
        return names, probes

    def _decisive_capabilities(self, guard: Guard) -> list[str]:
        """Capability keys of a guard that, by their value alone, make it hold."""
        if guard.kind == "case":
            return []
        leaves = guard.condition.leaves()
        keys = {leaf.text: self._capability_subjects(leaf.atom) for leaf in leaves if leaf.atom is not None}
        atoms = sorted(text for text, found in keys.items() if found)
        if not atoms or len(atoms) > _MAX_ATOMS:
            return []
        # `kvm_enabled()` holds wherever there is a put path to worry about.
        given = {
            leaf.text: True
            for leaf in leaves
            if leaf.atom is not None and leaf.atom.calls and set(leaf.atom.calls) <= self.assumed_calls
        }
        for values in product((False, True), repeat=len(atoms)):
            if _evaluate(guard.condition, {**given, **dict(zip(atoms, values, strict=True))}) is guard.holds:
                return sorted({key for text in atoms for key in keys[text]})
        return []

    def _compat(self, description: Description) -> tuple[CompatMitigation, ...]:
        if not description.needed:
            return ()
        found: list[CompatMitigation] = []
        for function in self.functions.get(description.needed, []):
            for path in function.reads:
                prop = self.compat.property_for(path)
                if prop is not None and all(m.property != prop for m in found):
                    found.append(self.compat.mitigation(prop))
        return tuple(found)


def _evaluate(condition: Condition, values: Mapping[str, bool]) -> bool | None:
    """Three-valued: None where the condition does not depend on capabilities alone."""
    if condition.op == "atom":
        return values.get(condition.text)
    results = [_evaluate(operand, values) for operand in condition.operands]
    if condition.op == "not":
        return None if results[0] is None else not results[0]
    if condition.op == "and":
        if False in results:
            return False
        return True if all(r is True for r in results) else None
    if True in results:
        return True
    return False if all(r is False for r in results) else None


def _guard_may_hold(guard: Guard, values: Mapping[str, bool]) -> bool:
    if guard.kind == "case":
        return True
    result = _evaluate(guard.condition, values)
    return result is None or result == guard.holds
