"""The people of the generated corpus: names, addresses, languages, mail clients and companies.

Owns: _Person and the cast (_people). Must not: generate messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mailsync.testing.corpus_base import _fmt_addr

# --------------------------------------------------------------------------------------------
# The cast: people, companies, languages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    display: str  # "" = bare address in From
    first: str
    last: str
    addr: str
    lang: str
    tz: int  # minutes east of UTC
    client: str  # gmail | outlook | thunderbird | apple | foxmail | iso2022
    title: str = ""
    company: str = ""
    phone: str = ""
    web: str = ""
    hdr: tuple[str, str] = ("utf-8", "B")  # charset and mode for encoded-words this client writes

    @property
    def sign(self) -> str:
        return self.display if self.lang in ("ja", "zh") else self.first

    @property
    def full(self) -> str:
        return self.display or f"{self.first} {self.last}"

    @property
    def domain(self) -> str:
        return self.addr.rsplit("@", 1)[1]

    def fmt(self, hdr: tuple[str, str] | None = None) -> str:
        charset, mode = hdr or self.hdr
        return _fmt_addr(self.display, self.addr, charset, mode)

    def signature(self) -> list[str]:
        if not self.company:
            return ["Sent from my iPhone"] if self.client == "apple" else [self.full]
        lines = [self.full, f"{self.title} | {self.company}" if self.title else self.company]
        if self.phone:
            lines.append(f"Tel. {self.phone}")
        if self.web:
            lines.append(self.web)
        return lines


def _people() -> tuple[_Person, ...]:
    P = _Person
    return (
        P("Jürgen Groß", "Jürgen", "Groß", "juergen.gross@mueller-bau.example", "de", 60, "outlook",
          "Leiter Einkauf", "Müller Bau GmbH", "+49 89 2154 3300", "www.mueller-bau.example",
          ("iso-8859-1", "Q")),
        P("Anna Schmidt", "Anna", "Schmidt", "a.schmidt@mueller-bau.example", "de", 60, "outlook",
          "Projektleiterin", "Müller Bau GmbH", "+49 89 2154 3317", "www.mueller-bau.example",
          ("iso-8859-1", "Q")),
        P("John O'Brien", "John", "O'Brien", "john.obrien@acme-logistics.example", "en", -300, "outlook",
          "VP Operations", "Acme Logistics Inc.", "+1 212 555 0147", "https://acme-logistics.example"),
        P("Smith, Karen", "Karen", "Smith", "karen.smith@globex.example", "en", -480, "outlook",
          "Director of Partnerships", "Globex Corporation", "+1 415 555 0199", "https://globex.example"),
        P("Mike Johnson", "Mike", "Johnson", "mike.johnson@eu.globex.example", "en", 0, "outlook",
          "Regional Sales Manager EMEA", "Globex Corporation", "+44 20 7946 0321", "https://globex.example"),
        P("François Lefèvre", "François", "Lefèvre", "francois.lefevre@lefevre-fils.example", "fr", 60,
          "thunderbird", "Directeur commercial", "Lefèvre & Fils SARL", "+33 4 72 00 12 34",
          "https://lefevre-fils.example", ("utf-8", "Q")),
        P("Zoë Ångström", "Zoë", "Ångström", "zoe.angstrom@nordlys.example", "en", 60, "apple",
          "Head of Product", "Nordlys AS", "+47 22 12 34 56", "nordlys.example"),
        P("", "Mette", "Hansen", "mette.hansen@nordlys.example", "en", 60, "apple",
          "Office Manager", "Nordlys AS", "+47 22 12 34 50", "nordlys.example"),
        P("山田 太郎", "太郎", "山田", "taro.yamada@sakura-trading.example", "ja", 540, "iso2022",
          "営業部 課長", "さくら商事株式会社", "+81 3 1234 5678", "https://sakura-trading.example",
          ("iso-2022-jp", "B")),
        P("李娜", "娜", "李", "li.na@hztech.example", "zh", 480, "thunderbird",
          "市场总监", "杭州智联科技有限公司", "+86 571 8888 6666", "https://hztech.example"),
        P("Priya Raman", "Priya", "Raman", "priya.raman@brightwave.example", "en", 0, "gmail",
          "Customer Success Lead", "Brightwave Analytics Ltd", "+44 161 555 0123",
          "https://brightwave.example"),
        P("Ahmed Al-Farsi", "Ahmed", "Al-Farsi", "ahmed.alfarsi@brightwave.example", "en", 240, "gmail",
          "Solutions Engineer", "Brightwave Analytics Ltd", "+971 4 555 0188", "https://brightwave.example"),
        P("Carlos Núñez", "Carlos", "Núñez", "carlos.nunez84@gmail.com", "es", 60, "gmail"),
        P("Ольга Смирнова", "Ольга", "Смирнова", "olga.smirnova@outlook.com", "ru", 180, "outlook",
          hdr=("koi8-r", "B")),
        P("Sean Murphy", "Sean", "Murphy", "seanm1979@yahoo.co.uk", "en", 0, "apple"),
        P("Lena Weber", "Lena", "Weber", "lena.weber@gmx.de", "de", 60, "thunderbird",
          hdr=("iso-8859-1", "Q")),
        P("王伟", "伟", "王", "wangwei1990@qq.com", "zh", 480, "foxmail", hdr=("gb18030", "B")),
        P("Emily Chen", "Emily", "Chen", "emily.chen@icloud.com", "en", -480, "apple"),
        P("Σοφία Παπαδοπούλου", "Sofia", "Papadopoulou", "sofia.papadopoulou@hotmail.com", "en", 120,
          "outlook"),
        P("Jana Nováková", "Jana", "Nováková", "jana.novakova@gmail.com", "en", 60, "gmail"),
    )


# company groups for threads: indices into _people()
_GROUPS = ((0, 1), (2,), (3, 4), (5,), (6, 7), (8,), (9,), (10, 11), (12,), (13,), (14,), (15,), (16,), (17,),
           (18,), (19,))
_GROUP_WEIGHTS = (9, 5, 6, 4, 5, 3, 3, 6, 2, 2, 2, 2, 2, 2, 1, 2)

_WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes"),
    "ja": ("月曜日", "火曜日", "水曜日", "木曜日", "金曜日"),
    "zh": ("周一", "周二", "周三", "周四", "周五"),
    "ru": ("понедельник", "вторник", "среду", "четверг", "пятницу"),
}
_CITIES = {
    "en": ("London", "Chicago", "Toronto", "Dublin", "Singapore", "Austin"),
    "de": ("München", "Köln", "Düsseldorf", "Zürich", "Wien"),
    "fr": ("Lyon", "Paris", "Bordeaux", "Genève"),
    "es": ("Madrid", "Sevilla", "Valencia"),
    "ja": ("東京", "大阪", "名古屋"),
    "zh": ("杭州", "上海", "深圳"),
    "ru": ("Москве", "Казани", "Самаре"),
}
_PRODUCTS = ("pallet racks", "conveyor belts", "sensor kits", "LED panels", "steel beams",
             "analytics licences", "support hours", "forklift batteries", "cold-chain trackers")
_PROJECTS = ("Atlas", "Nordstern", "Phoenix", "Blue Harbor", "Größe-Umbau", "Kestrel")
_COLLEAGUES = ("Dana Kim", "Tom Becker", "Sara Lindholm", "Rui Costa")

_LANG: dict[str, dict[str, Any]] = {
    "en": {
        "greet": ("Hi {first},", "Hello {first},", "Dear {first},", "Good morning {first},", "{first},"),
        "close": ("Best,", "Thanks,", "Kind regards,", "Cheers,", "Best regards,"),
        "subjects": ("Quote for {product}", "Meeting next week", "Invoice {inv}", "Contract renewal {year}",
                     "Onboarding next steps", "Delivery schedule - week {week}", "Follow-up from our call",
                     "Pricing question", "Project {project} kickoff", "Partnership opportunity",
                     "Updated price list", "Re-scheduling our {day} call", "Q{q} review",
                     "\U0001F680 Launch plan for {project}", "Feedback on the proposal",
                     "Intro: {myfirst} / {first}"),
        "sentences": (
            "Thanks for getting back to me so quickly.",
            "Could you send over the updated quote for {n} units of {product}?",
            "We reviewed the proposal internally and have a few questions on the pricing.",
            "I've attached the revised schedule; the main change is the delivery date for phase two.",
            "Would {day} at {time} work for a call?",
            "Our finance team confirmed that invoice {inv} was paid on {date}.",
            "Let me loop in {colleague}, who handles logistics on our side.",
            "The shipment left our warehouse in {city} this morning.",
            "We'd like to extend the contract for another twelve months.",
            "Can you confirm the billing address is still correct?",
            "I'm out of the office next week, but {colleague} can help in the meantime.",
            "The pilot went well and the team is keen to roll it out in {city}.",
            "I'll circle back once I've heard from legal.",
            "Just following up on my last email - any update on this?",
            "We can offer a {pct}% discount if the order is placed before the end of the month.",
            "The new price list takes effect on {date}.",
            "Happy to jump on a quick call if that's easier.",
            "Our current volume is about {n} orders per month.",
            "The onboarding session is scheduled for {day} at {time}.",
            "Could you share the technical requirements for the integration?",
            "I've updated the shared document with our comments.",
            "Looking forward to meeting you in {city}.",
            "Unfortunately the delivery has been delayed by about a week.",
            "Great to hear from you again!",
            "We'll need a purchase order number before we can ship.",
            "Let me know if anything is unclear.",
            "The demo environment is ready; you should have received the login details separately.",
            "We're finalising the budget for {year} and would like to include project {project}.",
        ),
        "attribution": "On {when}, {name} <{addr}> wrote:",
        "outlook": ("From", "Sent", "To", "Subject"),
        "reply": "Re: ",
        "ooo": ("Automatic reply: ", "I am out of the office until {date} with limited access to email. "
                "For urgent matters please contact {colleague}."),
    },
    "de": {
        "greet": ("Hallo {first},", "Guten Tag {first} {last},", "Sehr geehrte Damen und Herren,",
                  "Moin {first},"),
        "close": ("Viele Grüße", "Beste Grüße", "Mit freundlichen Grüßen"),
        "subjects": ("Angebot für {product}", "Rückfrage zur Rechnung {inv}", "Terminabstimmung KW {week}",
                     "Größenänderung der Lieferung", "Vertragsverlängerung {year}",
                     "Übergabe Projekt {project}",
                     "Lieferschein und Maße"),
        "sentences": (
            "Vielen Dank für Ihre schnelle Rückmeldung.",
            "Könnten Sie uns ein aktualisiertes Angebot für {n} Stück schicken?",
            "Die Lieferung verzögert sich leider um etwa eine Woche.",
            "Passt Ihnen {day} um {time} Uhr für ein kurzes Telefonat?",
            "Die Rechnung {inv} wurde am {date} beglichen.",
            "Anbei finden Sie die überarbeitete Zeitplanung.",
            "Wir möchten den Vertrag um weitere zwölf Monate verlängern.",
            "Bitte bestätigen Sie kurz die Rechnungsadresse.",
            "Die Größe der Lieferung hat sich geändert: jetzt {n} Paletten statt {n2}.",
            "Ich melde mich, sobald ich Rückmeldung von unserer Rechtsabteilung habe.",
            "Für Rückfragen stehe ich Ihnen gerne zur Verfügung.",
            "Das Treffen in {city} war sehr produktiv.",
            "Wir benötigen noch eine Bestellnummer, bevor wir liefern können.",
            "Die Maße für Halle 3 schicke ich Ihnen bis {day}.",
        ),
        "attribution": "Am {when} schrieb {name} <{addr}>:",
        "outlook": ("Von", "Gesendet", "An", "Betreff"),
        "reply": "AW: ",
        "ooo": ("Abwesenheitsnotiz: ",
                "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich {date} nicht "
                "im Büro. In dringenden Fällen wenden Sie sich bitte an {colleague}."),
    },
    "fr": {
        "greet": ("Bonjour {first},", "Cher {first},", "Bonjour Madame, Monsieur,"),
        "close": ("Cordialement,", "Bien à vous,", "Bonne journée,"),
        "subjects": ("Proposition commerciale - {product}", "Réunion de suivi", "Facture n° {inv}",
                     "Échéancier de livraison", "Contrat {year} à signer"),
        "sentences": (
            "Merci pour votre retour rapide.",
            "Pourriez-vous nous envoyer un devis mis à jour pour {n} unités ?",
            "La livraison est prévue pour le {date}.",
            "Êtes-vous disponible {day} à {time} pour un appel ?",
            "Veuillez trouver ci-joint le contrat signé.",
            "Nous avons bien reçu votre paiement, merci.",
            "Je reviens vers vous dès que possible.",
            "L'équipe à {city} est très enthousiaste à l'idée de ce projet.",
            "Le prix unitaire reste inchangé à {n} € HT.",
        ),
        "attribution": "Le {when}, {name} <{addr}> a écrit :",
        "outlook": ("De", "Envoyé", "À", "Objet"),
        "reply": "Re: ",
        "ooo": ("Réponse automatique : ", "Je suis absent jusqu'au {date} inclus. En cas d'urgence, "
                "merci de contacter {colleague}."),
    },
    "es": {
        "greet": ("Hola {first},", "Buenos días {first},"),
        "close": ("Un saludo,", "Saludos,", "Gracias,"),
        "subjects": ("Presupuesto para {product}", "Reunión del {day}", "Contrato firmado",
                     "¿Café en {city}?"),
        "sentences": (
            "Gracias por tu respuesta tan rápida.",
            "¿Podrías enviarme el presupuesto actualizado?",
            "La reunión será el {day} a las {time}.",
            "Te adjunto el contrato firmado.",
            "Quedo a la espera de tus comentarios.",
            "Estaré en {city} la semana que viene.",
        ),
        "attribution": "El {when}, {name} (<{addr}>) escribió:",
        "outlook": ("De", "Enviado", "Para", "Asunto"),
        "reply": "Re: ",
        "ooo": ("Respuesta automática: ", "Estoy fuera de la oficina hasta el {date}."),
    },
    "ru": {
        "greet": ("Здравствуйте, {first}!", "Добрый день, {first}!"),
        "close": ("С уважением,", "Спасибо,"),
        "subjects": ("Предложение по проекту {project}", "Договор и счёт", "Встреча на следующей неделе"),
        "sentences": (
            "Спасибо за быстрый ответ.",
            "Не могли бы вы прислать обновлённое предложение?",
            "Встреча назначена на {day} в {time}.",
            "Во вложении подписанный договор.",
            "Счёт {inv} оплачен {date}.",
            "Буду в {city} на следующей неделе.",
        ),
        "attribution": "{when}, {name} <{addr}> пишет:",
        "outlook": ("От", "Отправлено", "Кому", "Тема"),
        "reply": "RE: ",
        "ooo": ("Автоответ: ", "Я в отпуске до {date}. По срочным вопросам обращайтесь к {colleague}."),
    },
    "ja": {
        "greet": ("{last}様", "{last}様\n\nいつも大変お世話になっております。"),
        "close": ("よろしくお願いいたします。", "何卒よろしくお願い申し上げます。"),
        "subjects": ("お見積りのご依頼", "打ち合わせ日程のご相談", "納期について", "契約書送付の件"),
        "sentences": (
            "お見積りの件、ご確認いただきありがとうございます。",
            "来週{day}の{time}からお打ち合わせは可能でしょうか。",
            "納期について、社内で確認いたします。",
            "資料を添付いたしましたので、ご査収ください。",
            "ご不明な点がございましたら、お気軽にお問い合わせください。",
            "{city}の倉庫から本日出荷いたしました。",
            "数量は{n}個でお願いいたします。",
        ),
        "attribution": "{when} {name} <{addr}>:",
        "outlook": ("差出人", "送信日時", "宛先", "件名"),
        "reply": "Re: ",
        "ooo": ("自動応答: ", "{date}まで不在にしております。"),
    },
    "zh": {
        "greet": ("{full}，您好！", "{full}："),
        "close": ("祝好", "此致\n敬礼"),
        "subjects": ("关于合作事宜", "报价单", "交货时间确认", "会议安排"),
        "sentences": (
            "感谢您的及时回复。",
            "请查收附件中的报价单。",
            "我们计划下{day}安排一次电话会议。",
            "关于交货时间，我们需要再确认一下。",
            "合同已经签好，请查收。",
            "如有任何问题，请随时与我联系。",
            "本月订单量约为{n}件。",
        ),
        "attribution": "在 {when}，{name} <{addr}> 写道：",
        "outlook": ("发件人", "发送时间", "收件人", "主题"),
        "reply": "回复：",
        "ooo": ("自动回复：", "我将休假至{date}，期间回复可能延迟。"),
    },
}
_REPLY_PREFIX = re.compile(r"^((re|aw|sv|fw|fwd|wg|rv)\s?:\s?|回复：|自动回复：)+", re.IGNORECASE)
_NUMS = (12, 20, 40, 75, 120, 250, 500, 1200)




def _person_with(p: _Person, **changes: Any) -> _Person:
    fields = {f: getattr(p, f) for f in _Person.__dataclass_fields__}
    fields.update(changes)
    return _Person(**fields)


@dataclass
class _Node:
    """A message of a thread, kept so replies can chain and quote it."""

    mid: str
    refs: tuple[str, ...]
    sender: _Person
    to: tuple[_Person, ...]
    cc: tuple[_Person, ...]
    subject: str
    ts: int
    text: str
    lang: str
    folder: str = ""
    index: int = -1  # position in _Gen.out


