"""Look-alike text, by Unicode Technical Standard #39 (security mechanisms), for the
nickname rules in heroes.models: which characters render as nothing, whether a text
has anything visible, which of its words mix look-alike letters of different
scripts, and the confusable *skeleton* that look-alike texts share.

The data is Unicode's own, as maintained packages ship it: the regex module's
character properties (Default_Ignorable_Code_Point) and confusable-homoglyphs' copies
of confusables.txt and Scripts.txt. Nothing here is a hand-made table of characters
but BLANK_SYMBOLS (one character no property describes) and TR39's own list of
scripts written together (WRITING_SYSTEMS).
"""

import functools
import hashlib
import unicodedata

import regex
from confusable_homoglyphs import categories, confusables

# Characters that render as nothing: U+034F, U+115F, U+3164, variation selectors,
# U+180B, U+17B4, zero-width spaces and joiners, bidirectional controls...
DEFAULT_IGNORABLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
# U+2800 BRAILLE PATTERN BLANK is a symbol (So), not ignorable, yet it draws nothing:
# it looks like a space.
BLANK_SYMBOLS = frozenset("\u2800")
# Characters of these "scripts" go with letters of any script: digits and
# punctuation (Common), combining marks (Inherited), unassigned code points.
ANY_SCRIPT = frozenset({"COMMON", "INHERITED", "Unknown"})
# TR39 §5.1: Han is written together with Hiragana and Katakana (Japanese), with
# Hangul (Korean) and with Bopomofo; a word may mix the scripts of one of those.
WRITING_SYSTEMS = {
    "HAN": frozenset({"Jpan", "Kore", "Hanb"}),
    "HIRAGANA": frozenset({"Jpan"}),
    "KATAKANA": frozenset({"Jpan"}),
    "HANGUL": frozenset({"Kore"}),
    "BOPOMOFO": frozenset({"Hanb"}),
}
# confusable-homoglyphs keeps the glyphs of right-to-left characters between
# LEFT-TO-RIGHT MARKs, as confusables.txt's comments show them.
LEFT_TO_RIGHT_MARK = "\u200e"
WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")


def is_default_ignorable(char: str) -> bool:
    return DEFAULT_IGNORABLE.match(char) is not None


def is_visible(char: str) -> bool:
    """Whether `char` draws something: not a separator, control, format or other
    invisible character, not a combining mark (it needs a base), not a blank."""
    return not (
        unicodedata.category(char)[0] in "CMZ"
        or char.isspace()
        or char in BLANK_SYMBOLS
        or is_default_ignorable(char)
    )


@functools.lru_cache(maxsize=4096)  # a search over Scripts.txt's ranges per call
def script(char: str) -> str:
    """The Unicode script of `char`, as confusable-homoglyphs names it ("LATIN")."""
    return str(categories.alias(char))


def look_alikes(char: str) -> list[str]:
    """The texts confusables.txt lists as looking like `char` (either way round)."""
    found = confusables.confusables_data.get(char, [])
    return [glyph["c"].replace(LEFT_TO_RIGHT_MARK, "") for glyph in found]


def look_alike_mixes(text: str) -> list[tuple[str, list[str]]]:
    """The words of `text` that mix letters of scripts not written together, one of
    which looks like a letter of another of those scripts (TR39's mixed-script
    confusables), each with its scripts: [("Zed", ["CYRILLIC", "LATIN"])] for a
    Cyrillic e (U+0435) among Latin letters. A word of one script, or mixing scripts none of
    whose letters look alike ("Zed李"), is not one."""
    mixes = []
    for word in WORD.findall(text):
        scripts = {script(char) for char in word} - ANY_SCRIPT
        systems = [WRITING_SYSTEMS.get(name, frozenset({name})) for name in scripts]
        if not systems or frozenset.intersection(*systems):
            continue  # one script, or one writing system
        for char in word:
            others = scripts - {script(char)}
            if any(script(c) in others for glyph in look_alikes(char) for c in glyph):
                mixes.append((word, sorted(scripts)))
                break
    return mixes


@functools.cache
def prototypes() -> dict[str, str]:
    """confusables.txt's mapping of each character to its *prototype*, the text all its
    look-alikes map to.

    confusable-homoglyphs keeps each line `source → prototype` of the file both ways,
    in the file's order: the source lists the prototype, and the prototype lists its
    sources. A source is a single character listing one glyph that lists it back;
    that glyph is its prototype if it is several characters or has several sources
    (prototypes only are), or if it came after it (the source is listed first).
    """
    data = {
        key.replace(LEFT_TO_RIGHT_MARK, ""): look_alikes(key)
        for key in confusables.confusables_data
    }
    order = {key: position for position, key in enumerate(data)}
    mapping = {}
    for char, glyphs in data.items():
        if len(char) != 1 or len(glyphs) != 1:
            continue
        [glyph] = glyphs
        listed_back = data.get(glyph, [])
        if char in listed_back and (
            len(glyph) > 1 or len(listed_back) > 1 or order[char] < order[glyph]
        ):
            mapping[char] = glyph
    return mapping


def skeleton(text: str) -> str:
    """TR39's skeleton of `text`: NFD, without the characters that render as nothing,
    each character replaced by its prototype, NFD again. Texts with the same skeleton
    look alike: "Zed" with a Cyrillic e (U+0435) and "Zed", Cyrillic "Top" and "Top",
    "m" and "rn"."""
    mapping = prototypes()
    decomposed = DEFAULT_IGNORABLE.sub("", unicodedata.normalize("NFD", text))
    mapped = "".join(mapping.get(char, char) for char in decomposed)
    return unicodedata.normalize("NFD", mapped)


def skeleton_digest(text: str) -> str:
    """A fixed-size key (SHA-256, hex) that texts looking alike share: the skeleton,
    ignoring letter case ("PayPaI" with a capital I looks like "paypal"), with blanks
    as spaces and runs of spaces as one ("Zed" followed by U+2800 looks like "Zed")."""
    folded = skeleton(skeleton(text).lower())
    spaced = "".join(" " if char in BLANK_SYMBOLS else char for char in folded)
    return hashlib.sha256(" ".join(spaced.split()).encode()).hexdigest()
