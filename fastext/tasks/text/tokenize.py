"""Word tokenisation in the course's style, a vocabulary, numericalisation and decoding.

:func:`tokenize` cleans the text (:func:`fix_html`), splits it into words, punctuation runs and
newlines (:func:`split_words`), then applies the rules that keep the vocabulary small without
losing information: a run of three or more equal words becomes ``xxwrep n word``, a token made
of one character repeated three or more times becomes ``xxrep n c``, a capitalised word
becomes ``xxmaj word`` and an all-caps word ``xxup word``; ``xxbos`` opens every text.
:func:`decode` undoes the rules and joins the tokens with the spacing rules of English, so
``tokenize(decode(tokens)) == tokens`` for what :func:`tokenize` produces. The text itself
comes back unchanged only where those rules can tell how it was spaced, as for most prose;
the tokens do not say which side a single quote, a dot inside an abbreviation or an ``@``
stuck to, so these come back spaced (``"It was 'good'"`` -> ``"It was ' good '"``,
``"U.S.A."`` -> ``"U. S. A."``, ``"a@b.com"`` -> ``"a @ b. com"``).

The rules work on tokens rather than on characters (as fastai's do), so that decoding is
exact: ``"sooo"`` stays one word, while ``"!!!"`` and ``"..."`` become ``xxrep 3 !`` and
``xxrep 3 .``. Mixed-case words (``"McDonald"``) are kept as they are.

>>> toks = tokenize("I LOVED it!!! It was <br />very very very good.")
>>> " ".join(toks).replace("\\n", "\\\\n")
'xxbos xxmaj i xxup loved it xxrep 3 ! xxmaj it was \\\\n xxwrep 3 very good .'
>>> decode(toks)
'I LOVED it!!! It was\\nvery very very good.'
>>> vocab = Vocab.build([toks], min_freq=1)
>>> vocab.decode(vocab.numericalize(toks)) == decode(toks)
True
>>> decode(tokenize("It was 'good' in the U.S.A."))
"It was ' good ' in the U. S. A."
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

__all__ = [
    "BOS", "EOS", "FLD", "MAJ", "PAD", "REP", "SPECIAL_TOKENS", "UNK", "UP", "WREP", "Vocab",
    "decode", "fix_html", "replace_case", "replace_rep", "replace_wrep", "split_words",
    "numericalize_split", "tokenize", "tokenize_texts",
]

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
REP, WREP, UP, MAJ = "xxrep", "xxwrep", "xxup", "xxmaj"
#: Special tokens, in the order they take the first ids of every :class:`Vocab`
#: (``xxunk`` is 0, ``xxpad`` 1, ``xxbos`` 2).
SPECIAL_TOKENS: tuple[str, ...] = (UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ)

# -- clean-up -----------------------------------------------------------------------------
_BR = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
# Only real HTML tags go: "x<y and y>z" or "<3" is text. A known tag name, then attributes
# (``name``, ``name=value``, ``name="value"``), an optional "/" (self-closing), ">".
_TAG_NAMES = (
    "a|abbr|address|article|aside|audio|b|big|blink|blockquote|body|br|button|caption|center|"
    "cite|code|col|colgroup|dd|del|details|dfn|div|dl|dt|em|figcaption|figure|font|footer|"
    "form|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|label|li|link|marquee|meta|"
    "nav|nobr|ol|option|p|picture|pre|q|s|samp|script|section|select|small|source|span|"
    "strike|strong|style|sub|summary|sup|table|tbody|td|textarea|tfoot|th|thead|title|tr|tt|"
    "u|ul|var|video|wbr")
_TAG = re.compile(
    rf"</?(?:{_TAG_NAMES})(?![\w-])"  # no space after "<": "a < b > c" is text
    # "\s*(?:/\s*)?>", not "\s*/?\s*>": two \s* in a row backtrack quadratically on a
    # long run of spaces that never closes
    r"""(?:\s+[\w:-]+(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>=`]+))?)*\s*(?:/\s*)?>""",
    re.IGNORECASE)
# IMDB's raw files hold entities that lost their "&" (``#39;``, ``quot;``). A bare named one
# counts only where it stands alone, not as the tail of a word ("result;" keeps its "lt;"); a
# bare numeric one only where it stands for a symbol or a non-ASCII letter (see
# :func:`_restore_entity`: "#1;" and "#10;" stay as they are).
_BARE_ENTITY = re.compile(r"(?<![&\w])(?:quot|amp|nbsp|lt|gt);|(?<!&)#\d+;")
_SPACES = re.compile(r"[^\S\n]+")
_NL_SPACES = re.compile(r" *\n *")


def _restore_entity(m: re.Match[str]) -> str:
    """The ``&`` put back in front of a bare entity, unless it is numeric and its character
    is a control character, an ASCII letter or digit, or invalid (then ``#n;`` is text)."""
    ent = "&" + m.group(0)
    if ent[1] == "#":
        ch = html.unescape(ent)
        if (len(ch) != 1 or ch == "\ufffd" or not (ch.isprintable() or ch == "\u00a0")
                or (ch.isascii() and ch.isalnum())):
            return m.group(0)
    return ent


def fix_html(text: str) -> str:
    """HTML clean-up: ``<br />`` becomes a newline, the tags of common HTML elements go
    (``_TAG_NAMES``: a ``<`` that opens none of them, as in ``"x<y"`` or ``"<3"``, is text),
    entities (also IMDB's bare ``#39;``/``quot;``, but not the end of a word as in
    ``"result;"``) are unescaped, the text is put in Unicode NFC form, curly apostrophes
    become ``'``, ``\\r\\n`` becomes ``\\n``, runs of other whitespace become one space.

    >>> fix_html("Great<br /><br />movie &amp; #39;fun#39; <i>really</i>")
    "Great\\n\\nmovie & 'fun' really"
    >>> fix_html("if x<y and y>z, <3")
    'if x<y and y>z, <3'
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BR.sub("\n", text)
    text = _TAG.sub("", text)
    text = _BARE_ENTITY.sub(_restore_entity, text)
    # NFC: an accent typed as a combining mark ("e" + U+0301) and the precomposed letter
    # ("\u00e9") give the same tokens
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\u00a0", " ")
    return _NL_SPACES.sub("\n", _SPACES.sub(" ", text)).strip(" ")


# -- splitting ------------------------------------------------------------------------------
def _mark_class() -> str:
    """A regex class of the characters that continue the one before them: combining marks
    (categories Mn, Mc, Me: Devanagari vowel signs, accents, variation selectors) and the
    emoji skin-tone modifiers. Python's ``\\w`` holds no mark, so without them "हिन्दी"
    would split after each letter. Marks lie in planes 0, 1 and 14 only."""
    marks = [c for r in (range(0x300, 0x20000), range(0xE0000, 0xE1000)) for c in r
             if unicodedata.category(chr(c))[0] == "M"]
    marks += range(0x1F3FB, 0x1F400)  # skin tones are Sk, but modify the emoji before them
    ranges: list[list[int]] = []
    for c in marks:
        if ranges and c == ranges[-1][1] + 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]"


_MARK = _mark_class()
_TRAILING_MARKS = re.compile(f"{_MARK}+$")
# A word: letters/digits (each with its marks), joined by inner apostrophes or hyphens
# ("o'er", "well-made"), or by a "." "," ":" "/" between digits ("3.5", "1,000", "7/10").
# Anything else that is not a space is a run of one repeated symbol with its marks ("!!!",
# "...", a skin-toned emoji). Each newline is a token of its own.
def _token_re(marks: bool) -> re.Pattern[str]:
    alnums = rf"[^\W_](?:[^\W_]|{_MARK})*" if marks else r"[^\W_]+"
    word = rf"{alnums}(?:(?:['-]|[.,:/](?=\d)){alnums})*"
    sym = rf"(?:[^\w\s]|_){_MARK}*" if marks else r"[^\w\s]|_"
    return re.compile(rf"\n|{word}|(?P<sym>{sym})(?P=sym)*")


# ASCII text holds no mark: its pattern skips the large mark class (a quarter of the time)
_TOKEN, _TOKEN_ASCII = _token_re(marks=True), _token_re(marks=False)
_SUFFIXES = ("'s", "'re", "'ve", "'ll", "'d", "'m")
_NT = "n't"


def _split_contraction(word: str) -> list[str]:
    low = word.lower()
    # no split after "'" or "-": "is-n't" would leave a token "is-" that reads back as text
    if low.endswith(_NT) and len(word) > 3 and word[-4] not in "'-":
        return [word[:-3], word[-3:]]
    for suf in _SUFFIXES:
        if low.endswith(suf) and len(word) > len(suf) and word[-len(suf) - 1] not in "'-":
            return [word[: -len(suf)], word[-len(suf):]]
    return [word]


def split_words(text: str) -> list[str]:
    """Words, runs of one repeated symbol, and newlines; contractions split as in English
    tokenizers (``"don't"`` -> ``do n't``, ``"it's"`` -> ``it 's``).

    >>> split_words("Don't stop -- it's 3.5 stars...\\nOK?!")
    ['Do', "n't", 'stop', '--', 'it', "'s", '3.5', 'stars', '...', '\\n', 'OK', '?', '!']
    """
    out: list[str] = []
    for m in (_TOKEN_ASCII if text.isascii() else _TOKEN).finditer(text):
        tok = m.group(0)
        out.extend(_split_contraction(tok) if "'" in tok else (tok,))
    return out


# -- rules ----------------------------------------------------------------------------------
def _is_word(tok: str) -> bool:
    return tok[:1].isalnum()


def replace_wrep(tokens: Sequence[str], min_rep: int = 3) -> list[str]:
    """A word repeated ``min_rep`` or more times in a row becomes ``xxwrep n word``.

    >>> replace_wrep(["no", "no", "no", "no", "!"])
    ['xxwrep', '4', 'no', '!']
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and tokens[j] == tokens[i]:
            j += 1
        if j - i >= min_rep and _is_word(tokens[i]) and tokens[i] not in SPECIAL_TOKENS:
            out += [WREP, str(j - i), tokens[i]]
        else:
            out += tokens[i:j]
        i = j
    return out


def replace_rep(tokens: Sequence[str], min_rep: int = 3) -> list[str]:
    """A token made of one character repeated ``min_rep`` or more times becomes
    ``xxrep n c``.

    >>> replace_rep(["wow", "!!!!", "..", "zzz"])
    ['wow', 'xxrep', '4', '!', '..', 'xxrep', '3', 'z']
    """
    out: list[str] = []
    for tok in tokens:
        if len(tok) >= min_rep and tok == tok[0] * len(tok) and tok != "\n":
            out += [REP, str(len(tok)), tok[0]]
        else:
            out.append(tok)
    return out


def replace_case(tokens: Sequence[str]) -> list[str]:
    """All-caps words (two characters or more) become ``xxup word``, capitalised ones
    ``xxmaj word``; mixed case stays as it is, since lower-casing it would lose information.

    >>> replace_case(["The", "BBC", "I", "McDonald", "ok"])
    ['xxmaj', 'the', 'xxup', 'bbc', 'xxmaj', 'i', 'McDonald', 'ok']
    """
    out: list[str] = []
    for tok in tokens:
        if tok in SPECIAL_TOKENS:
            out.append(tok)
        elif len(tok) > 1 and tok.isupper() and tok.lower().upper() == tok:
            out += [UP, tok.lower()]
        elif tok[:1].isupper() and tok[1:] == tok[1:].lower() and _cap(tok.lower()) == tok:
            out += [MAJ, tok.lower()]
        else:
            out.append(tok)
    return out


def tokenize(text: str, bos: bool = True) -> list[str]:
    """The course's tokenisation of one text: :func:`fix_html`, :func:`split_words`, then
    :func:`replace_wrep`, :func:`replace_rep`, :func:`replace_case`, with ``xxbos`` first.

    >>> tokenize("HELLO hello!!!")
    ['xxbos', 'xxup', 'hello', 'hello', 'xxrep', '3', '!']
    """
    toks = replace_case(replace_rep(replace_wrep(split_words(fix_html(text)))))
    return [BOS, *toks] if bos else toks


def tokenize_texts(texts: Iterable[str], bos: bool = True) -> list[list[str]]:
    """:func:`tokenize` over many texts (a missing text raises, naming its position).

    Raises:
        TypeError: ``texts`` is one string (it would be read as texts of one character),
            or a text is not a string.
    """
    if isinstance(texts, str):
        raise TypeError("tokenize_texts takes an iterable of texts, not a string: "
                        "use tokenize for one text")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str (missing value?)")
        out.append(tokenize(t, bos))
    return out


# -- decoding -------------------------------------------------------------------------------
_CLOSE = set(".,!?;:%)]}")
_OPEN = set("([{$#")
_DROP = {PAD, EOS, FLD}


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _unit(tokens: Sequence[str], i: int) -> tuple[str, int]:
    """The text of the token (with its rule prefixes) starting at ``i``, and where the next
    one starts. A rule marker without a valid operand (a language model may sample
    ``xxmaj xxmaj`` or an ``xxrep`` at the end) carries no text: it comes out empty."""
    tok = tokens[i]
    if tok in (MAJ, UP) and i + 1 < len(tokens) and tokens[i + 1] not in SPECIAL_TOKENS:
        s, j = _unit(tokens, i + 1)
        return (_cap(s) if tok == MAJ else s.upper()), j
    # "zzz zzz zzz" is "xxwrep 3 xxrep 3 z": a character run may be repeated as a word, but
    # never a rule inside the same rule
    if (tok in (REP, WREP) and i + 2 < len(tokens) and tokens[i + 1].isdigit()
            and tokens[i + 2] not in (BOS, PAD, EOS, FLD, UNK, WREP, tok)):
        n = int(tokens[i + 1])
        s, j = _unit(tokens, i + 2)
        if not s:  # the operand is a marker without its own operand: no text
            return "", i + 1
        return (s * n if tok == REP else " ".join([s] * n)), j
    if tok in (MAJ, UP, REP, WREP):
        return "", i + 1
    return tok, i + 1


def _glue(prev: str, cur: str, quote_open: bool) -> bool:
    """Whether ``cur`` follows ``prev`` without a space."""
    if prev == "\n" or cur == "\n" or prev.endswith("\n"):
        return True
    prev = _TRAILING_MARKS.sub("", prev) or prev  # "हिन्दी" ends a word, its last mark aside
    if cur.lower() in (*_SUFFIXES, _NT):
        return prev[-1:].isalnum()
    if cur == '"':  # a closing quote sticks to what it closes, an opening one to what follows
        return quote_open and (prev[-1:].isalnum() or prev[-1:] in _CLOSE)
    if prev == '"' and quote_open:
        return cur[:1].isalnum()
    if prev in _OPEN:
        return cur[:1].isalnum() or (cur in _OPEN and cur != prev)
    if cur[:1] in _CLOSE and len(set(cur)) == 1:  # never glue "!" to "!": they would merge
        return (prev[-1:].isalnum() or prev[-1:] in _CLOSE or prev[-1:] == '"') \
            and prev[-1:] != cur[:1]
    return False


def decode(tokens: Sequence[str]) -> str:
    """Text from tokens: the rules undone (``xxmaj w`` -> ``W``, ``xxup w`` -> ``W``,
    ``xxrep n c`` -> ``c`` n times, ``xxwrep n w`` -> ``w`` n times), ``xxbos`` dropped at the
    start and a paragraph break elsewhere, ``xxpad``/``xxeos``/``xxfld`` and rule markers
    without an operand dropped, and spaces put back by English rules (none before
    ``.,!?;:`` or ``n't``, none inside brackets and quotes, none around newlines).

    >>> decode(["xxbos", "xxmaj", "it", "'s", "(", "xxup", "ok", ")", "."])
    "It's (OK)."
    """
    out: list[str] = []
    quote_open = False
    i = 0
    while i < len(tokens):
        if tokens[i] in _DROP:
            i += 1
            continue
        if tokens[i] == BOS:
            if out:
                out.append("\n\n")
            i += 1
            continue
        s, i = _unit(tokens, i)
        if not s:
            continue
        if out and not _glue(out[-1], s, quote_open):
            out.append(" ")
        if s == '"':
            quote_open = not quote_open
        out.append(s)
    return "".join(out)


# -- vocabulary -----------------------------------------------------------------------------
class Vocab:
    """Token <-> id. The special tokens come first (``xxunk`` = 0, ``xxpad`` = 1), then the
    tokens seen at least ``min_freq`` times, most frequent first (ties: alphabetical), at most
    ``max_vocab`` in all. Unknown tokens map to ``xxunk``.

    >>> v = Vocab.build([["xxbos", "a", "b", "a"], ["xxbos", "a", "c"]], min_freq=2)
    >>> v.itos[len(SPECIAL_TOKENS):], v.numericalize(["a", "b"]).tolist()
    (['a'], [9, 0])
    """

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if len(set(itos)) != len(itos):
            raise ValueError("a vocabulary cannot hold the same token twice")
        if UNK not in itos or PAD not in itos:
            raise ValueError(f"a vocabulary needs {UNK!r} and {PAD!r}")
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}
        self.unk, self.pad = self.stoi[UNK], self.stoi[PAD]

    @classmethod
    def build(cls, docs: Iterable[Sequence[str]], min_freq: int = 3,
              max_vocab: int = 60000) -> Vocab:
        """The vocabulary of tokenised ``docs`` (lists of tokens)."""
        if min_freq < 1 or max_vocab < len(SPECIAL_TOKENS):
            raise ValueError(f"need min_freq >= 1 and max_vocab >= {len(SPECIAL_TOKENS)}, "
                             f"got {min_freq} and {max_vocab}")
        counts: Counter[str] = Counter()
        for doc in docs:
            if isinstance(doc, str):
                raise TypeError("Vocab.build takes lists of tokens, not strings: tokenize first")
            counts.update(doc)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIAL_TOKENS),
                      key=lambda t: (-counts[t], t))
        return cls([*SPECIAL_TOKENS, *kept[: max_vocab - len(SPECIAL_TOKENS)]])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, tok: str) -> bool:
        return tok in self.stoi

    def numericalize(self, tokens: Sequence[str]) -> Tensor:
        """int64 ids of ``tokens`` (unknown ones -> ``xxunk``).

        Raises:
            TypeError: ``tokens`` is a string (its characters would be read as tokens).
        """
        if isinstance(tokens, str):
            raise TypeError("numericalize takes a list of tokens, not a string: tokenize first")
        get, unk = self.stoi.get, self.unk
        return torch.tensor([get(t, unk) for t in tokens], dtype=torch.long)

    def check_ids(self, docs: Sequence[Tensor], name: str) -> None:
        """Checks that every id of ``docs`` (1-D integer tensors) is in this vocabulary; the
        language-model and classifier loaders both call it, since an id beyond the embedding
        fails only later, deep inside training. Anything that is not a 1-D integer tensor is
        left to the loaders, which reject it with their own message.

        >>> Vocab(["xxunk", "xxpad", "a"]).check_ids([torch.tensor([2, 3])], "train")
        Traceback (most recent call last):
        ...
        ValueError: train document 0 holds ids outside the vocabulary (size 3)

        Raises:
            ValueError: a document holds an id below 0 or at least ``len(self)``, naming
                ``name`` (``"train"``, ``"valid"``) and the document's position.
        """
        n = len(self)
        for i, d in enumerate(docs):
            if (isinstance(d, Tensor) and d.dim() == 1 and len(d) and not d.is_floating_point()
                    and d.dtype != torch.bool and (int(d.min()) < 0 or int(d.max()) >= n)):
                raise ValueError(f"{name} document {i} holds ids outside the vocabulary "
                                 f"(size {n})")

    def tokens(self, ids: Tensor | Sequence[int]) -> list[str]:
        """Tokens of ``ids`` (a 1-D tensor or sequence of ints)."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1 or ids.is_floating_point():
                raise ValueError(f"expected a 1-D integer tensor, got {ids.dtype} "
                                 f"{tuple(ids.shape)}")
            ids = ids.tolist()
        n = len(self.itos)
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise IndexError(f"id(s) {bad[:5]} outside the vocabulary (size {n})")
        return [self.itos[i] for i in ids]

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """Text of ``ids`` (see :func:`decode`)."""
        return decode(self.tokens(ids))


def numericalize_split(texts: Sequence[str], train_idx: Tensor, valid_idx: Tensor,
                       vocab: Vocab | None = None, min_freq: int = 3, max_vocab: int = 60000,
                       ) -> tuple[Vocab, list[Tensor], list[Tensor]]:
    """``texts`` tokenised (:func:`tokenize_texts`) and numericalised with ``vocab`` or, by
    default, the vocabulary of the rows ``train_idx`` (:meth:`Vocab.build` with
    ``min_freq``, ``max_vocab``): the vocabulary and the training and validation documents,
    the table loaders' shared pipeline.

    >>> v, tr, va = numericalize_split(["a b", "a c"], torch.tensor([0]), torch.tensor([1]),
    ...                                min_freq=1)
    >>> v.tokens(tr[0]), v.tokens(va[0])
    (['xxbos', 'a', 'b'], ['xxbos', 'a', 'xxunk'])
    """
    toks = tokenize_texts(texts)
    if vocab is None:
        vocab = Vocab.build([toks[i] for i in train_idx.tolist()], min_freq, max_vocab)
    return (vocab, [vocab.numericalize(toks[i]) for i in train_idx.tolist()],
            [vocab.numericalize(toks[i]) for i in valid_idx.tolist()])
