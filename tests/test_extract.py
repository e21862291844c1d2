"""The code and link extractor over a corpus of mail as services really send it (codes, links, quotes)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from backend.mail.extract import MAX_LINKS, extract


@dataclass
class Mail:
    name: str
    subject: str
    text: str
    html: str | None = None


GITHUB_DEVICE = Mail("github device verification", "[GitHub] Please verify your device", """\
Hey octocat!

A sign in attempt requires further verification because we did not recognize your device. To complete the \
sign in, enter the verification code on the unrecognized device.

Device: Chrome on macOS
Verification code: 482913

If you did not attempt to sign in to your account, your password may be compromised. Visit \
https://github.com/settings/security to create a new, strong password for your GitHub account.

If you'd like to automatically verify devices in the future, consider enabling two-factor authentication on \
your account. Visit https://docs.github.com/articles/configuring-two-factor-authentication to learn about \
two-factor authentication.

Thanks,
The GitHub Team
""")

GITHUB_LAUNCH = Mail("github launch code", "Your GitHub launch code", """\
Almost done, @octocat! To complete your GitHub sign up, we just need to verify your email address.

Here is your GitHub launch code:

31415926

Don't share this code with anyone.
This code is valid for 4 hours and can only be used once.

You're receiving this email because you recently created a new GitHub account. If this wasn't you, please \
ignore this email.

GitHub, Inc. ・88 Colin P Kelly Jr Street ・San Francisco, CA 94107
""")

GOOGLE_TEXT = """\
Verify your email

Google received a request to use alex@example.com as a recovery email for Google Account alex.w@gmail.com.

Use this code to finish setting up this recovery email:

583021

This code will expire in 24 hours.

If you don't recognize alex.w@gmail.com, you can safely ignore this email.

You received this email to let you know about important changes to your Google Account and services.
© 2024 Google LLC, 1600 Amphitheatre Parkway, Mountain View, CA 94043, USA
"""
GOOGLE_HTML = """<!DOCTYPE html><html><head><style>.code{font-size:32px}</style><title>Google</title></head>
<body><table width="100%"><tr><td>
<img src="https://www.gstatic.com/images/branding/googlelogo/2x/googlelogo_color_74x24dp.png" alt="Google">
<div style="font-size:24px">Verify your email</div>
<div>Google received a request to use <a style="font-weight:bold">alex@example.com</a> as a recovery email for
Google Account <a>alex.w@gmail.com</a>.<br><br>Use this code to finish setting up this recovery email:
<div class="code" style="letter-spacing:3px">583021</div>This code will expire in 24 hours.<br><br>
If you don&#8217;t recognize alex.w@gmail.com, you can safely ignore this email.</div>
</td></tr><tr><td style="font-size:11px">You received this email to let you know about important changes to
your Google Account and services.<br>&copy; 2024 Google LLC, 1600 Amphitheatre Parkway, Mountain View, CA 94043,
USA <a href="https://myaccount.google.com/notifications">Learn more</a></td></tr></table></body></html>"""
GOOGLE = Mail("google recovery email", "Verify your recovery email", GOOGLE_TEXT, GOOGLE_HTML)

SLACK = Mail("slack confirmation code", "Slack confirmation code: 7RK-Q2M", "", """\
<html><body><table><tr><td><img alt="Slack" src="https://a.slack-edge.com/logo.png"></td></tr>
<tr><td><h1>Confirm your email address</h1>
<p>Your confirmation code is below &mdash; enter it in your open browser window and we&rsquo;ll help you get
signed in.</p>
<div style="background:#F5F4F5;font-size:30px;padding:24px">7RK-Q2M</div>
<p>If you didn&rsquo;t request this email, there&rsquo;s nothing to worry about &mdash; you can safely ignore
it.</p></td></tr>
<tr><td><a href="https://slack.com/">Our Blog</a> | <a href="https://slack.com/intl/en-gb/legal">Policies</a> |
<a href="https://slack.com/help">Help Center</a> | <a href="https://slack.com/community">Slack Community</a>
<br>&copy;2024 Slack Technologies, LLC, a Salesforce company.<br>500 Howard Street, San Francisco, CA 94105</td>
</tr></table></body></html>""")

STRIPE = Mail("stripe-like verification", "Your verification code", """\
Your verification code is: 123-456

Enter this code to finish signing in to your dashboard. This code expires in 10 minutes.

If you didn't try to sign in, reset your password at https://dashboard.example-pay.com/reset.

Example Payments, Inc., 510 Townsend Street, San Francisco, CA 94103
""")

BANK_SMS = Mail("bank OTP, SMS style", "Transaction OTP", (
    "Your OTP for txn of INR 5,000.00 at AMAZON PAY on card XX1234 is 839201. Valid for 10 mins. "
    "Do not share with anyone. Not you? Call 1800-123-4567."
))

MICROSOFT = Mail("microsoft security code", "Microsoft account security code", """\
Microsoft account

Security code

Please use the following security code for the Microsoft account ab*****@example.com.

Security code: 4829103

If you don't recognize the Microsoft account ab*****@example.com, you can click \
https://account.live.com/dp?ft=DEADBEEF to remove your email address from that account.

Thanks,
The Microsoft account team
""")

AMAZON = Mail("amazon identity check", "Verify your new Amazon account", """\
To verify your identity, please use the following code:

614523

Amazon takes your account security very seriously. Amazon will never email you and ask you to disclose or \
verify your Amazon password, credit card, or banking account number.
""")

GERMAN = Mail("german confirmation", "Ihr Bestätigungscode", """\
Hallo Max,

Ihr Bestätigungscode lautet: 482910

Der Code ist 10 Minuten gültig.

Musterfirma GmbH, Hauptstraße 5, 10115 Berlin, Telefon: 030 1234567
""")

GERMAN_TAN = Mail("german mTAN", "mTAN", (
    "Ihre mTAN für die Überweisung von 250,00 EUR an DE89 3704 0044 0532 0130 00 lautet 771204. "
    "Sie ist 5 Minuten gültig."
))

MULTILINGUAL = [
    Mail("french", "Code de vérification", "Votre code de vérification est : 731904. Il expire dans 15 minutes."),
    Mail("spanish", "Tu código", "Tu código de verificación es 528341. No lo compartas con nadie."),
    Mail("portuguese", "Código", "Seu código de verificação é 904127. Ele expira em 10 minutos."),
    Mail("italian", "Codice", "Il tuo codice di verifica è 381920. Scade tra 10 minuti."),
    Mail("dutch", "Verificatie", "Je verificatiecode is 662019. Deze code verloopt over 10 minuten."),
    Mail("chinese", "验证码", (
        "【某某科技】您的验证码是：382910，5分钟内有效，请勿泄露给他人。如非本人操作，请忽略本短信。"
        "客服电话：400-123-4567"
    )),
    Mail("japanese", "認証コードのお知らせ", "認証コード：123456\nこのコードの有効期限は10分間です。"),
    Mail("japanese full-width", "確認コード", "確認コードは　６５４３２１　です。"),
    Mail("korean", "인증번호", "[Web발신]\n[네이버] 인증번호 [482019]를 입력해주세요."),
    Mail("korean spaced", "인증 코드", "인증 코드: 918273\n이 코드는 5분 동안 유효합니다."),
    Mail("russian", "Код", "Ваш код подтверждения: 5812. Никому не сообщайте его."),
]

GOOGLE_SMS_STYLE = Mail("G- prefix", "", "G-738214 is your Google verification code.")
CODE_FIRST = Mail("code before its word", "", "Use 204918 as your Instagram login code. Don't share it.")
ALPHANUMERIC = Mail("alphanumeric", "Sign in", "Your sign-in code is XJ4P9Q\n\nIt expires at 10:45.")
SUBJECT_ONLY = Mail("code in the subject", "492011 is your Discord verification code", "Welcome back!")

NEW_CODE_QUOTING_OLD = Mail("new code above a quoted old one", "Re: Your code", """\
Sorry, that one expired. Here is the new code: 222222

On Mon, May 13, 2024 at 10:02 AM Acme Security <security@acme.example> wrote:
> Your verification code is 111111.
> It expires in 10 minutes.
""")

REPLY_QUOTING_OLD = Mail("reply quoting an old code", "Re: Your code", """\
Thanks, that worked!

On Mon, May 13, 2024 at 10:02 AM Acme Security <security@acme.example> wrote:
> Your verification code is 111111.
> Visit https://acme.example/verify?token=old to finish.
""")

OUTLOOK_REPLY = Mail("outlook reply quoting an old code", "RE: Your code", """\
Sounds good, I'm in.

From: Acme Security <security@acme.example>
Sent: Monday, May 13, 2024 10:02 AM
To: Bob <bob@example.com>
Subject: Your code

Your verification code is 111111.
""")

FORWARDED = Mail("forwarded code", "Fwd: Your code", """\
FYI

---------- Forwarded message ---------
From: Acme Security <security@acme.example>
Date: Mon, May 13, 2024 at 10:02 AM
Subject: Your code
To: <bob@example.com>

Your verification code is 333333.
""")

HTML_REPLY = Mail("html reply with gmail quote", "Re: Your code", "", """\
<div dir="ltr">New code: <b>445566</b>. Confirm at <a href="https://acme.example/confirm?c=new">this link</a>.
</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, May 13, 2024 Acme wrote:<br></div>
<blockquote class="gmail_quote" style="margin:0 0 0 .8ex">Your verification code is 111111.
<a href="https://acme.example/confirm?c=old">Confirm</a><div>nested <div>still quoted 999999</div></div>
</blockquote></div>""")

POSITIVE = [
    (GITHUB_DEVICE, ["482913"]),
    (GITHUB_LAUNCH, ["31415926"]),
    (GOOGLE, ["583021"]),
    (SLACK, ["7RK-Q2M"]),
    (STRIPE, ["123-456"]),
    (BANK_SMS, ["839201"]),
    (MICROSOFT, ["4829103"]),
    (AMAZON, ["614523"]),
    (GERMAN, ["482910"]),
    (GERMAN_TAN, ["771204"]),
    (GOOGLE_SMS_STYLE, ["738214"]),
    (CODE_FIRST, ["204918"]),
    (ALPHANUMERIC, ["XJ4P9Q"]),
    (SUBJECT_ONLY, ["492011"]),
    (NEW_CODE_QUOTING_OLD, ["222222"]),
    (FORWARDED, ["333333"]),
    (HTML_REPLY, ["445566"]),
    *((mail, [code]) for mail, code in zip(MULTILINGUAL, [
        "731904", "528341", "904127", "381920", "662019", "382910", "123456", "654321", "482019", "918273", "5812",
    ], strict=True)),
]

NEWSLETTER_LINKS = "".join(
    f'<tr><td><a href="https://news.example.com/articles/{n}?utm_source=newsletter&amp;utm_medium=email">'
    f"Story number {n}</a></td></tr>\n" for n in range(1, 61)
)
NEWSLETTER = Mail("newsletter with many links", "Spring sale: 20% off everything", (
    "Spring sale! Use code SPRING24 at checkout for 20% off. Sale ends May 31, 2024.\n"
    "Headphones now $129.99 (was $199.99). Order by 12/24 for delivery before the holidays.\n"
    "Questions? Call 1-800-555-0199.\n"
    "© 2024 Acme Inc., 123 Market St, San Francisco, CA 94105\n"
    "Unsubscribe: https://news.example.com/unsubscribe?u=42\n"
), f"""<html><body><h1>Spring sale!</h1>
<p>Use code <b>SPRING24</b> at checkout for 20% off. Sale ends May 31, 2024.</p>
<p>Headphones now $129.99 (was $199.99). Order by 12/24 for delivery before the holidays.</p>
<table>{NEWSLETTER_LINKS}</table>
<p>Questions? Call <a href="tel:+18005550199">1-800-555-0199</a> or <a href="mailto:help@example.com">write</a>.
<a href="javascript:alert(1)">x</a> <a href="/relative/path">relative</a></p>
<p>&copy; 2024 Acme Inc., 123 Market St, San Francisco, CA 94105</p></body></html>""")

SHIPPING = Mail("shipping notice", "Your order has shipped", """\
Thanks for your order!

Order #112-4456789-1234567
Order number: 40213377
Total: $54.20 (incl. €3.10 tax)
Estimated delivery: Tuesday, May 21, 2024 between 10:00 and 14:00

Shipping to:
Jane Doe
742 Evergreen Terrace
Springfield, IL 62704
Postal code: 62704
Tracking code: 1Z999AA10123456784

Track your package: https://shipping.example.com/track?id=1Z999AA10123456784
Customer service: +1 (206) 266-1000
""")

INVOICE = Mail("invoice", "Rechnung 2024-0042", """\
Rechnung Nr. 20240042 vom 18.05.2024
Betrag: 1.299,00 EUR
Bitte überweisen Sie den Betrag auf IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX.
Verwendungszweck: Kundennummer 884213, Rechnungsnummer 20240042.
Musterfirma GmbH, Hauptstraße 5, 10115 Berlin, Tel. +49 30 1234567
""")

MEETING = Mail("personal mail with numbers", "Friday", """\
Hi Sam,

the code review is at 1500 on Friday in room 4012. Bring the 2023 figures; the budget was 45000 last year.
Our new office is at 2200 Mission St, and my phone is 415 555 0182.

Cheers, Kim
""")

PROMO = Mail("promo code", "A gift for you", "Use promo code WELCOME10 for 10% off your first order of $50+.")

ZIP = Mail("zip code mention", "Address update", "Please confirm your ZIP code: 94107, and your area code 415.")

NEGATIVE = [NEWSLETTER, SHIPPING, INVOICE, MEETING, PROMO, ZIP, REPLY_QUOTING_OLD, OUTLOOK_REPLY]


@pytest.mark.parametrize(("mail", "codes"), POSITIVE, ids=[m.name for m, _ in POSITIVE])
def test_the_code_a_person_would_type_comes_first(mail: Mail, codes: list[str]) -> None:
    found = extract(mail.subject, mail.text, mail.html)["codes"]
    assert found[: len(codes)] == codes
    assert found == codes, f"extra candidates besides the code: {found}"


@pytest.mark.parametrize("mail", NEGATIVE, ids=[m.name for m in NEGATIVE])
def test_no_code_in_mail_without_one(mail: Mail) -> None:
    assert extract(mail.subject, mail.text, mail.html)["codes"] == []


def _urls(mail: Mail) -> list[str]:
    return [link["url"] for link in extract(mail.subject, mail.text, mail.html)["links"]]


def test_links_from_text_in_order_without_sentence_punctuation() -> None:
    assert _urls(GITHUB_DEVICE) == [
        "https://github.com/settings/security",
        "https://docs.github.com/articles/configuring-two-factor-authentication",
    ]
    assert _urls(STRIPE) == ["https://dashboard.example-pay.com/reset"]


def test_html_links_keep_their_anchor_text_and_decoded_url() -> None:
    links = extract(SLACK.subject, SLACK.text, SLACK.html)["links"]
    assert links == [
        {"url": "https://slack.com/", "text": "Our Blog"},
        {"url": "https://slack.com/intl/en-gb/legal", "text": "Policies"},
        {"url": "https://slack.com/help", "text": "Help Center"},
        {"url": "https://slack.com/community", "text": "Slack Community"},
    ]
    assert extract(GOOGLE.subject, GOOGLE.text, GOOGLE.html)["links"] == [
        {"url": "https://myaccount.google.com/notifications", "text": "Learn more"},
    ]


def test_newsletter_links_are_capped_and_only_web_links() -> None:
    links = extract(NEWSLETTER.subject, NEWSLETTER.text, NEWSLETTER.html)["links"]
    assert len(links) == MAX_LINKS
    assert links[0] == {"url": "https://news.example.com/articles/1?utm_source=newsletter&utm_medium=email",
                        "text": "Story number 1"}
    assert all(link["url"].startswith("https://") for link in links)


def test_a_link_in_both_parts_is_listed_once_with_its_anchor_text() -> None:
    text = "Confirm your address: https://acme.example/confirm?t=abc (valid for a day).\n"
    html = '<p><a href="https://acme.example/confirm?t=abc">Confirm your address</a></p>'
    plain_only = "See https://en.wikipedia.org/wiki/Foo_(bar), and <https://acme.example/help>."
    assert extract("", text + plain_only, html)["links"] == [
        {"url": "https://acme.example/confirm?t=abc", "text": "Confirm your address"},
        {"url": "https://en.wikipedia.org/wiki/Foo_(bar)", "text": ""},
        {"url": "https://acme.example/help", "text": ""},
    ]


def test_image_links_use_the_alt_text_and_odd_links_are_dropped() -> None:
    html = (
        '<a href="https://acme.example/go"><img src="https://acme.example/b.png" alt="Get started"></a>'
        '<a href="  https://acme.example/spaced\n/path ">Spaced</a>'
        f'<a href="https://acme.example/{"x" * 3000}">too long</a>'
        '<a href="http://[::1">broken</a><a href="ftp://acme.example/f">ftp</a><a>no href</a>'
    )
    assert extract("", "", html)["links"] == [
        {"url": "https://acme.example/go", "text": "Get started"},
        {"url": "https://acme.example/spaced/path", "text": "Spaced"},
    ]


def test_quoted_links_are_left_out_of_a_reply() -> None:
    assert _urls(REPLY_QUOTING_OLD) == []
    assert _urls(HTML_REPLY) == ["https://acme.example/confirm?c=new"]


def test_a_message_that_is_all_quotation_is_read_whole() -> None:
    text = "> Your verification code is 646464.\n> https://acme.example/v\n"
    assert extract("", text, None) == {"codes": ["646464"], "links": [{"url": "https://acme.example/v", "text": ""}]}


@pytest.mark.parametrize("html", [
    'hello <![a="!Y-"! <a href="https://acme.example/x">x',
    "<" * 10_000,
    "<a href='https://acme.example/" + "a" * 100_000,
    "<blockquote>" * 5_000 + "code 123456",
    "\x00<a href=\"https://acme.example/\x00\">\x00</a>",
])
def test_hostile_html_still_gives_an_answer(html: str) -> None:
    result = extract("subject", "", html)
    assert set(result) == {"codes", "links"}


def test_huge_bodies_are_read_only_as_far_as_codes_and_links_go() -> None:
    text = "Your verification code is 551199.\n" + "lorem ipsum dolor sit amet 2024 " * 400_000
    html = "<p>Your code: 551199</p>" + '<a href="https://acme.example/">more</a>' * 400_000
    assert extract("", text, html) == {"codes": ["551199"], "links": [{"url": "https://acme.example/", "text": "more"}]}
