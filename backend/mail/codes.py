"""One-time codes in text: 4–10 digits or a short upper-case code, next to a code word, in several languages.

Deterministic rules, tuned on real sign-up, login and bank mail (tests/test_extract.py):

- A *code word* is "code" (and compounds such as "Bestätigungscode", "verificatiecode"), "OTP", "PIN",
  "TAN", "passcode", "one-time", "verification", "2FA", código, codice, код, 验证码, 認証コード, 인증번호 …
  A code word is ignored when it is about something else ("zip code", "code postal", "error code",
  "code review") or sits in a promotion ("use code SAVE20 for 20% off").
- A *candidate* is 4–10 digits (or two groups, `123 456`, `123-456`), or an upper-case code of 4–10
  letters and digits with at least one digit (`XJ4P9Q`, `A7K-29Q`); a hyphenated code of letters alone
  counts only on a line of its own. Digits inside links, e-mail addresses, prices, phone numbers,
  dates, IBANs and addresses, or named as an order, invoice, account or card number, are not codes.
- Each code word claims the nearest candidate after it and the nearest one before it; a number that
  could be a year is claimed only right after the word. Codes come best first (nearest to their word).

Every scan is bounded (characters read, code words and candidates considered), and the common case,
text without any code word, costs a few substring searches.
"""

from __future__ import annotations

import re
from bisect import bisect_left

MAX_CODES = 5
MAX_CODE_TEXT = 20_000
"""Characters of a body read for codes: a one-time code sits near the top of its message."""
MAX_CODE_WORDS = 100
"""Code words read per kind: a real code mail has a handful; pages of them are not a code mail."""
FORWARD_WINDOW = 160
"""How far after its code word a code may be (Slack-style mails put a sentence in between)."""
BACKWARD_WINDOW = 40
"""How far before its code word a code may be ("123456 is your code")."""
YEAR_WINDOW = 12
"""A number that could be a year counts only right after a code word ("code: 2024")."""
CONTEXT = 40
"""Characters on each side of a candidate looked at to tell prices, phones and dates from codes."""

# Code words, lower-cased, by how they join the words around them. Each is found with `str.find`,
# much faster than one regular expression over the body; words in other scripts are only looked for
# in text that is not plain ASCII.
_COMPOUND = ("code", "codes", "codice", "codigo", "kode")
"""May end a longer word: "Bestätigungscode", "verificatiecode", "Sicherheitscode"."""
_COMPOUND_NON_ASCII = ("código",)
_STEMS = ("verif", "authenti", "einmalpassw", "einmal-passw")
"""Begin a word that may go on: "verification", "verifizieren", "authentication"."""
_STEMS_NON_ASCII = ("vérif", "bestätig", "одноразов")
_WORDS = ("one-time", "one time", "onetime", "otp", "passcode", "2fa", "two-factor", "two factor", "clave",
          "usage unique")
_KOD_ENDINGS = frozenset(("", "а", "у", "ом", "е", "ы", "ов"))
_CJK = ("验证码", "驗證碼", "校验码", "校驗碼", "动态码", "動態碼", "动态密码", "动态口令", "确认码", "確認碼", "安全码",
        "コード", "認証番号", "確認番号", "暗証番号", "ワンタイム", "認証", "코드", "인증")
_CASED = ("PIN", "TAN")
"""Only in capitals (pin and tan are English words), with up to five lower-case letters before: mTAN."""

# A code word is not about a one-time code when one of these is the word, or stands right next to it.
_NOT_OTP_WORDS = frozenset((
    "zip", "postal", "post", "postcode", "zipcode", "promo", "promotional", "promocode", "discount", "coupon",
    "voucher", "gift", "referral", "area", "country", "dialing", "error", "status", "response", "http",
    "source", "sourcecode", "qr", "qrcode", "bar", "barcode", "tracking", "product", "item", "dress", "tax",
    "sort", "swift", "iban", "bic", "gutscheincode", "rabattcode", "aktionscode", "fehlercode", "postale",
    "promocional", "descuento", "réduction", "remise", "sconto", "korting", "kortingscode", "unicode", "html",
    "css", "exit", "morse", "review", "reviews", "base", "reference", "snippet", "snippets", "block",
    "editor", "of", "conduct", "promotion",
))
_PROMO = re.compile(
    r"promo|coupon|discount|voucher|% ?off|\boff your|gutschein|rabatt|réduction|remise|descuento|cupón"
    r"|sconto|korting|优惠|折扣|クーポン|할인|쿠폰|скидк|промокод"
)
# Found fast by its first character, then checked precisely where it starts (`_CANDIDATE.match`).
_CANDIDATE_START = re.compile(r"[0-9A-Z]{3}")
_CANDIDATE = re.compile(
    r"(?:[0-9]{3,5}[ -][0-9]{3,5}|[0-9]{4,10}|[A-Z0-9]{3,4}-[A-Z0-9]{3,4}|[A-Z0-9]{4,10})"
    r"(?![A-Za-z0-9_@/%‰]|[.,:][0-9]|-[A-Za-z0-9]|\s?(?:%|€|\$|£|円|元|원|₽|руб|USD|EUR|GBP|CHF|kr\b)"
    r"|[年月日時分秒号號년월일시분])"
)
_GLUED_BEFORE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,/#$€£¥₹@+-")
# Spans whose digits are never codes: prices, phone numbers, dates, addresses, IBANs.
_NOT_CODES = re.compile(
    r"(?:[$€£¥₹]|\b(?:USD|EUR|GBP|INR|JPY|CHF|CAD|AUD|Rs\.?|R\$))\s?[0-9][0-9.,]*"
    r"|(?:\+|\b00)[0-9][0-9 ()./-]{6,}[0-9]"
    r"|\(?\b[0-9]{2,4}\)?[ .-][0-9]{2,4}[ .-][0-9]{2,5}\b"
    r"|\b[0-9]{1,4}[./-][0-9]{1,2}[./-][0-9]{1,4}\b"
    r"|\b[A-Z]{2} [0-9]{5}(?:-[0-9]{4})?\b"
    r"|\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"
    r"|(?:^|, ?)[0-9]{4,5} (?:[A-Z]{2} )?[A-ZÄÖÜÉ][a-zäöüßéèà]+"
    r"|(?i:\b(?:tel|tél|phone|telefon|téléphone|teléfono|telefono|fax|call|mobile|hotline|whatsapp)\b)\.?:? ?"
    r"\+?[0-9][0-9 ()/.-]{5,}[0-9]",
    re.MULTILINE,
)
# Words that make the number after them an identifier of something else ("order 12345678", "Nr. 4711").
_IDENTIFIER_BEFORE = re.compile(
    r"(?:(?<![^\W\d_])(?:order|invoice|ticket|account|acct|a/c|card|ending(?: in)?|case|ref|reference|tracking"
    r"|booking|customer|member|receipt|room|suite|flight|seat|version|model|serial|patent|isbn|zip"
    r"|transaction|txn|no|nr|n°|number|id|bestell\w*|rechnung\w*|kunden\w*|auftrag\w*|commande|facture"
    r"|pedido|factura|ordine|fattura|bestelling|factuur|заказ\w*|счет\w*)|订单号?|訂單號?|注文番号|주문\s?번호)"
    r"\W{0,4}(?:#|no\.?|nr\.?|number|id)?\W{0,3}$",
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
# Full-width digits and letters (common in Japanese and Chinese mail) read as the ASCII an agent types.
_FULL_WIDTH = {0xFF10 + i: 0x30 + i for i in range(10)} | {0xFF21 + i: 0x41 + i for i in range(26)}
_HAS_FULL_WIDTH = re.compile("[\uff10-\uff19\uff21-\uff3a]")

Span = tuple[int, int]


def _letter(text: str, i: int) -> bool:
    return 0 <= i < len(text) and text[i].isalpha()


def _occurrences(haystack: str, needle: str) -> list[int]:
    found, i = [], haystack.find(needle)
    while i >= 0 and len(found) < MAX_CODE_WORDS:
        found.append(i)
        i = haystack.find(needle, i + len(needle))
    return found


def _code_words(text: str, low: str) -> list[Span]:
    """Spans of the code words in `text` (`low` is `text` lower-cased, same length), in order."""
    spans: set[Span] = set()
    ascii_only = text.isascii()
    if "cod" in low or "kode" in low or not ascii_only:
        for core in _COMPOUND if ascii_only else _COMPOUND + _COMPOUND_NON_ASCII:
            for i in _occurrences(low, core):
                start, end = i, i + len(core)
                while start > 0 and low[start - 1].isalpha() and i - start < 20:
                    start -= 1
                if not _letter(low, end) and not _letter(low, start - 1):
                    spans.add((start, end))
    for core in _STEMS if ascii_only else _STEMS + _STEMS_NON_ASCII:
        for i in _occurrences(low, core):
            if not _letter(low, i - 1):
                end = i + len(core)
                while end < len(low) and low[end].isalpha() and end - i < 24:
                    end += 1
                spans.add((i, end))
    for core in _WORDS:
        for i in _occurrences(low, core):
            if not low[i - 1:i].isalnum() and not _letter(low, i + len(core)):
                spans.add((i, i + len(core)))
    for core in _CASED:
        for i in _occurrences(text, core):
            start = i
            while start > 0 and text[start - 1].islower() and i - start < 5:
                start -= 1
            if not _letter(text, start - 1) and not _letter(text, i + 3):
                spans.add((start, i + 3))
    if not ascii_only:
        for i in _occurrences(low, "код"):
            end = i + 3
            while end < len(low) and low[end].isalpha() and end - i < 6:
                end += 1
            if not _letter(low, i - 1) and low[i + 3:end] in _KOD_ENDINGS:
                spans.add((i, end))
        for core in _CJK:
            spans.update((i, i + len(core)) for i in _occurrences(text, core))
    return sorted(spans)[:MAX_CODE_WORDS]


def _about_a_code(low: str, span: Span, promotional: bool) -> bool:
    """False for code words about something else: "zip code", "code postal", "use code SAVE20 for 20% off"."""
    start, end = span
    before = low[max(0, start - 24):start].split()[-1:]
    after = low[end:end + 24].split()[:1]
    words = {w.strip(".,:;()[]\"'") for w in (low[start:end], *before, *after)}
    if words & _NOT_OTP_WORDS:
        return False
    return not promotional or not _PROMO.search(low, max(0, start - CONTEXT), end + CONTEXT)


def _candidates(text: str) -> list[tuple[int, int, str]]:
    """Every string shaped like a code, in order, before the context checks of `_is_code`."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while len(found) < 20 * MAX_CODE_WORDS:
        hint = _CANDIDATE_START.search(text, pos)
        if hint is None:
            break
        start = hint.start()
        m = _CANDIDATE.match(text, start)
        if m is None or (start > 0 and text[start - 1] in _GLUED_BEFORE and text[start - 2:start] != "G-"):
            # Skip the rest of this run of letters and digits: a code never starts inside one.
            pos = start + 1
            while pos < len(text) and text[pos].isalnum():
                pos += 1
            continue
        found.append((start, m.end(), m.group(0)))
        pos = m.end()
    return found


def _alone_on_line(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    return not text[line_start:start].strip() and not text[end:line_end if line_end >= 0 else None].strip()


def _is_code(text: str, start: int, end: int, value: str) -> bool:
    """Whether a code-shaped string is a code where it stands (not a price, phone, date, link, order number)."""
    if not any(c.isdigit() for c in value) and ("-" not in value or not _alone_on_line(text, start, end)):
        return False
    token_start = max(text.rfind(" ", 0, start), text.rfind("\n", 0, start)) + 1
    token = text[token_start:start]
    if "://" in token or "@" in token or token.lower().startswith("www."):
        return False
    for m in _NOT_CODES.finditer(text, max(0, start - CONTEXT), min(len(text), end + CONTEXT)):
        if m.start() <= start < m.end():
            return False
    return not _IDENTIFIER_BEFORE.search(text, max(0, start - 30), start)


def find_codes(text: str) -> list[str]:
    """One-time codes in `text`, best first (see the module docstring for the rules)."""
    text = text[:MAX_CODE_TEXT]
    if not text.isascii() and _HAS_FULL_WIDTH.search(text):
        text = text.translate(_FULL_WIDTH)
    low = text.lower()
    if len(low) != len(text):  # a few letters lower-case to two characters; keep positions aligned
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    words = _code_words(text, low)
    candidates = _candidates(text) if words else []
    if not candidates:
        return []
    promotional = _PROMO.search(low) is not None
    starts = [c[0] for c in candidates]
    checked: dict[int, bool] = {}

    def valid(i: int) -> bool:
        if i not in checked:
            checked[i] = _is_code(text, *candidates[i])
        return checked[i]

    best: dict[str, tuple[int, int]] = {}

    def claim(i: int, distance: int) -> None:
        value = candidates[i][2]
        if _YEAR.fullmatch(value) and distance > YEAR_WINDOW:
            return
        rank = (distance, candidates[i][0])
        if value not in best or rank < best[value]:
            best[value] = rank

    for start, end in words:
        i = bisect_left(starts, end)
        j = bisect_left(starts, start) - 1
        near_after = i < len(candidates) and candidates[i][0] - end <= FORWARD_WINDOW
        near_before = j >= 0 and start - candidates[j][1] <= BACKWARD_WINDOW
        if not (near_after or near_before) or not _about_a_code(low, (start, end), promotional):
            continue
        while i < len(candidates) and candidates[i][0] - end <= FORWARD_WINDOW:
            if valid(i):
                claim(i, candidates[i][0] - end)
                break
            i += 1
        while j >= 0 and start - candidates[j][1] <= BACKWARD_WINDOW:
            if candidates[j][1] <= start and valid(j):
                # A code before its word is the less common layout: it ranks as if twice as far away.
                claim(j, 2 * (start - candidates[j][1]))
                break
            j -= 1
    return sorted(best, key=best.__getitem__)[:MAX_CODES]
