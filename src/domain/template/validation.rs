//! Validation: a draft checked against its channel's rules, every problem reported against
//! its field (the name, the texts and their placeholders, buttons, image, samples).

use super::*;

/// Checks a draft against its channel's rules. Every problem is reported, each against its field.
pub fn validate(kind: ChannelKind, draft: &TemplateDraft) -> Result<ValidTemplate, FieldProblems> {
    let mut errors = FieldProblems::default();
    let name = errors.check("name", TemplateName::parse(&draft.name));
    let language = errors.check("language", Language::parse(kind, &draft.language));
    let category = errors
        .check("category", TemplateCategory::parse(kind, &draft.category))
        .flatten();
    if kind == ChannelKind::Whatsapp && category == Some(TemplateCategory::Authentication) {
        let authentication = authentication::check(&mut errors, draft);
        return match (name, language, authentication) {
            (Some(name), Some(language), Some(auth)) => {
                let body = auth.body_text();
                let slots = slots(None, &body, &[]);
                let samples = check_code_sample(&mut errors, &slots, &draft.samples);
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(ValidTemplate {
                    kind,
                    name,
                    language,
                    category,
                    parameter_format: ParameterFormat::Positional,
                    header: None,
                    footer: auth.footer_text(),
                    body,
                    buttons: Vec::new(),
                    image_url: None,
                    samples,
                    authentication: Some(auth),
                })
            }
            _ => Err(errors),
        };
    }
    if !draft.otp.is_blank() {
        errors.add(
            "otp.otp_type",
            "Only WhatsApp authentication templates have a code button: choose the authentication category, or clear these fields.",
        );
    }

    let header = normalise(&draft.header);
    let body = normalise(&draft.body);
    let footer = normalise(&draft.footer);
    let header = (!header.is_empty()).then_some(header);
    let footer = (!footer.is_empty()).then_some(footer);

    let header_styles = match &header {
        Some(text) => check_header(&mut errors, kind, text),
        None => Vec::new(),
    };
    let body_styles = check_body(&mut errors, kind, &body, category);
    if let Some(text) = &footer {
        check_footer(&mut errors, kind, text);
    }
    let parameter_format = check_format(&mut errors, kind, &header_styles, &body_styles);
    let buttons = match kind {
        ChannelKind::Whatsapp => check_whatsapp_buttons(&mut errors, &draft.buttons),
        ChannelKind::Viber => check_viber_button(&mut errors, &draft.buttons),
        ChannelKind::Sms => {
            if draft.buttons.iter().any(|b| !b.is_blank()) {
                errors.add("buttons", "SMS has no buttons: put the link in the text.");
            }
            Vec::new()
        }
    };
    let image_url = check_image(&mut errors, kind, &draft.image_url);

    let urls = button_urls(&buttons);
    let slots = slots(header.as_deref(), &body, &urls);
    let samples = check_samples(&mut errors, kind, &slots, &draft.samples);

    match (name, language) {
        (Some(name), Some(language)) if errors.is_empty() => Ok(ValidTemplate {
            kind,
            name,
            language,
            category,
            parameter_format,
            header,
            body,
            footer,
            buttons,
            image_url,
            samples,
            authentication: None,
        }),
        _ => Err(errors),
    }
}

/// An authentication template's sample code is optional (Meta reviews these templates without
/// examples); one given must be a code Meta would take.
fn check_code_sample(
    errors: &mut FieldProblems,
    slots: &[Slot<'_>],
    given: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut samples = BTreeMap::new();
    for (key, value) in given {
        let value = normalise(value);
        if value.is_empty() {
            continue;
        }
        if !slots.iter().any(|s| &s.key == key) {
            errors.add(
                format!("samples.{key}"),
                format!("There is no placeholder \"{key}\" in this template."),
            );
        } else if let Some(problem) = authentication::code_problem(&value) {
            errors.add(
                format!("samples.{key}"),
                format!("The sample code: {problem}"),
            );
        } else {
            samples.insert(key.clone(), value);
        }
    }
    samples
}

/// Length, markup and brace checks every text field gets.
fn check_text<'a>(
    errors: &mut FieldProblems,
    kind: ChannelKind,
    field: &str,
    what: &str,
    text: &'a str,
    limit: usize,
) -> Scan<'a> {
    let len = char_len(text);
    if len > limit {
        errors.add(
            field,
            format!(
                "{} allows at most {limit} characters in the {what}; this one has {len}.",
                kind.label()
            ),
        );
    }
    if let Some(tag) = find_markup(text) {
        errors.add(field, markup_message(kind, tag));
    }
    let scan = scan(text);
    for problem in &scan.problems {
        errors.add(field, problem.clone());
    }
    scan
}

/// The first thing that looks like an HTML tag: `<b>`, `</i>`, `<script src=…>`.
pub(super) fn find_markup(text: &str) -> Option<&str> {
    text.match_indices('<').find_map(|(at, _)| {
        let rest = &text[at + 1..];
        let name = rest.strip_prefix('/').unwrap_or(rest);
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let end = rest.find(['>', '<', '\n'])?;
        rest[end..]
            .starts_with('>')
            .then(|| &text[at..at + 1 + end + 1])
    })
}

fn markup_message(kind: ChannelKind, tag: &str) -> String {
    let shown: String = tag.chars().take(30).collect();
    let lower = shown.to_ascii_lowercase();
    let code = ["<script", "<iframe", "<object", "<embed", "<style"]
        .iter()
        .any(|t| lower.starts_with(t));
    let mut message = format!(
        "\"{shown}\" looks like HTML. {} shows text exactly as written, so the customer would see the tag itself",
        kind.label()
    );
    if code {
        message.push_str(
            "; code is never run in a message and reviewers reject templates that carry it",
        );
    }
    if kind == ChannelKind::Whatsapp {
        message.push_str(". For formatting use *bold*, _italic_ or ~strikethrough~.");
    } else {
        message.push('.');
    }
    message
}

/// Classifies each placeholder under the channel's naming rules, reporting the ones that break
/// them.
fn classify_all<'a>(
    errors: &mut FieldProblems,
    kind: ChannelKind,
    field: &str,
    scan: &Scan<'a>,
) -> Vec<(&'a str, Style)> {
    scan.placeholders()
        .filter_map(|name| {
            errors
                .check(field, classify(kind, name))
                .map(|style| (name, style))
        })
        .collect()
}

fn check_header(errors: &mut FieldProblems, kind: ChannelKind, text: &str) -> Vec<Style> {
    if kind != ChannelKind::Whatsapp {
        errors.add(
            "header",
            format!(
                "{} templates have no header: put this text in the body.",
                kind.label()
            ),
        );
        return Vec::new();
    }
    let scan = check_text(errors, kind, "header", "header", text, WHATSAPP_HEADER_MAX);
    if text.contains('\n') {
        errors.add("header", "A header is one line: remove the line break.");
    }
    let found = classify_all(errors, kind, "header", &scan);
    if scan.placeholders().count() > 1 {
        errors.add(
            "header",
            "A header can have one placeholder at most (Meta).",
        );
    }
    for (name, style) in &found {
        if matches!(style, Style::Positional(n) if *n != 1) {
            errors.add(
                "header",
                format!("The header numbers its placeholder on its own: write {{{{1}}}} instead of {{{{{name}}}}}."),
            );
        }
    }
    check_meta_placement(errors, "header", "header", &scan);
    found.into_iter().map(|(_, style)| style).collect()
}

fn check_body(
    errors: &mut FieldProblems,
    kind: ChannelKind,
    text: &str,
    category: Option<TemplateCategory>,
) -> Vec<Style> {
    if text.is_empty() {
        errors.add("body", "Enter the text of the message.");
        return Vec::new();
    }
    let scan = check_text(errors, kind, "body", "text", text, body_limit(kind));
    let found = classify_all(errors, kind, "body", &scan);
    let occurrences: Vec<&str> = scan.placeholders().collect();
    let mut distinct: Vec<&str> = Vec::new();
    for name in &occurrences {
        if distinct.contains(name) {
            // Meta's send fills each placeholder from one value of a list, and its docs do
            // not say whether review accepts a repeat, so Herald asks for each once. Viber
            // and SMS fill a repeat from the same named value.
            if kind == ChannelKind::Whatsapp {
                errors.add(
                    "body",
                    format!("{{{{{name}}}}} is used more than once: WhatsApp expects each placeholder once."),
                );
            }
        } else {
            distinct.push(name);
        }
    }
    check_sequence(errors, "body", &found);
    match kind {
        ChannelKind::Whatsapp => {
            check_meta_placement(errors, "body", "body", &scan);
            check_word_ratio(errors, &scan, occurrences.len());
        }
        ChannelKind::Viber => {
            if distinct.len() > VIBER_PARAMS_MAX {
                errors.add(
                    "body",
                    format!(
                        "Viber templates have at most {VIBER_PARAMS_MAX} placeholders; this one has {}.",
                        distinct.len()
                    ),
                );
            }
            if let Some(last) = occurrences.last()
                && !scan.gaps().last().is_some_and(|g| has_word(g))
            {
                errors.add(
                    "body",
                    format!("The last word cannot be a placeholder (Infobip): add words after {{{{{last}}}}}."),
                );
            }
            if category == Some(TemplateCategory::Otp) && !distinct.contains(&"pin") {
                errors.add(
                    "body",
                    "An OTP template must contain {{pin}}, where the code goes.",
                );
            }
        }
        ChannelKind::Sms => {}
    }
    found.into_iter().map(|(_, style)| style).collect()
}

/// Numbered placeholders must run 1, 2, 3… without gaps: a send fills them from a list.
fn check_sequence(errors: &mut FieldProblems, field: &str, found: &[(&str, Style)]) {
    let numbers: Vec<u32> = found
        .iter()
        .filter_map(|(_, style)| match style {
            Style::Positional(n) => Some(*n),
            Style::Named => None,
        })
        .collect();
    let Some(max) = numbers.iter().max() else {
        return;
    };
    let missing: Vec<String> = (1..*max)
        .filter(|n| !numbers.contains(n))
        .take(5)
        .map(|n| format!("{{{{{n}}}}}"))
        .collect();
    match missing.len() {
        0 => {}
        1 => errors.add(
            field,
            format!(
                "Placeholders must be numbered 1, 2, 3… without gaps: {} is missing.",
                missing[0]
            ),
        ),
        _ => errors.add(
            field,
            format!(
                "Placeholders must be numbered 1, 2, 3… without gaps: {} are missing.",
                missing.join(", ")
            ),
        ),
    }
}

/// Does a stretch of text hold a word (anything alphanumeric), not just spaces or punctuation?
fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Meta rejects a header or body that starts or ends with a placeholder ("leading or trailing
/// parameters not allowed", error 2388299) and placeholders next to each other. Meta counts a
/// placeholder followed only by punctuation ("… gate {{2}}.") as trailing, and two placeholders
/// separated only by a space or punctuation as adjacent, so Herald asks for a word in each place.
fn check_meta_placement(errors: &mut FieldProblems, field: &str, what: &str, scan: &Scan<'_>) {
    let names: Vec<&str> = scan.placeholders().collect();
    let (Some(first), Some(last)) = (names.first(), names.last()) else {
        return;
    };
    let gaps = scan.gaps();
    if !gaps.first().is_some_and(|g| has_word(g)) {
        errors.add(
            field,
            format!("The {what} cannot start with a placeholder: add words before {{{{{first}}}}} (Meta error 2388299)."),
        );
    }
    if !gaps.last().is_some_and(|g| has_word(g)) {
        errors.add(
            field,
            format!("The {what} cannot end with a placeholder, even followed by punctuation: add words after {{{{{last}}}}} (Meta error 2388299)."),
        );
    }
    for (i, pair) in names.windows(2).enumerate() {
        if !has_word(&gaps[i + 1]) {
            errors.add(
                field,
                format!(
                    "{{{{{}}}}} and {{{{{}}}}} are next to each other: put words between placeholders (Meta rejects adjacent parameters).",
                    pair[0], pair[1]
                ),
            );
        }
    }
}

/// Meta rejects a body with too many placeholders for its length ("parameters words ratio exceeds
/// limit", 2388293) without publishing the ratio. Integrators who measured it (Syniverse,
/// Mercuri, Maqsam) agree on at least 2 × P + 1 other words for P placeholders; Herald asks for
/// that. A word is a run of text without spaces containing a letter or digit.
fn check_word_ratio(errors: &mut FieldProblems, scan: &Scan<'_>, placeholders: usize) {
    if placeholders == 0 {
        return;
    }
    let words: usize = scan
        .gaps()
        .iter()
        .map(|g| g.split_whitespace().filter(|w| has_word(w)).count())
        .sum();
    let needed = 2 * placeholders + 1;
    if words < needed {
        errors.add(
            "body",
            format!(
                "Too many placeholders for the length of the text: with {placeholders} placeholder{} Meta expects at least {needed} other words, and this text has {words} (Meta error 2388293).",
                if placeholders == 1 { "" } else { "s" }
            ),
        );
    }
}

fn check_footer(errors: &mut FieldProblems, kind: ChannelKind, text: &str) {
    if kind != ChannelKind::Whatsapp {
        errors.add(
            "footer",
            format!(
                "{} templates have no footer: put this text in the body.",
                kind.label()
            ),
        );
        return;
    }
    let scan = check_text(errors, kind, "footer", "footer", text, WHATSAPP_FOOTER_MAX);
    if scan.placeholders().next().is_some() {
        errors.add("footer", "The footer cannot have placeholders (Meta).");
    }
}

/// One style of placeholder in the whole template: a send gives either a list or a map.
fn check_format(
    errors: &mut FieldProblems,
    kind: ChannelKind,
    header: &[Style],
    body: &[Style],
) -> ParameterFormat {
    if kind == ChannelKind::Viber {
        return ParameterFormat::Named;
    }
    let is_named = |s: &Style| matches!(s, Style::Named);
    let first = body.first().or(header.first());
    let Some(first) = first else {
        return ParameterFormat::Positional;
    };
    let named = is_named(first);
    for (field, styles) in [("body", body), ("header", header)] {
        if styles.iter().any(|s| is_named(s) != named) {
            errors.add(
                field,
                "Do not mix numbered ({{1}}) and named ({{first_name}}) placeholders: use one kind in the whole template.",
            );
        }
    }
    if named {
        ParameterFormat::Named
    } else {
        ParameterFormat::Positional
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ButtonType {
    QuickReply,
    Url,
    PhoneNumber,
}

impl ButtonType {
    /// Meta's limit per type: 10 quick replies, 2 URL buttons, 1 phone button.
    fn limit(self) -> (usize, &'static str) {
        match self {
            ButtonType::QuickReply => (WHATSAPP_QUICK_REPLIES_MAX, "quick-reply buttons"),
            ButtonType::Url => (WHATSAPP_URL_BUTTONS_MAX, "link buttons"),
            ButtonType::PhoneNumber => (WHATSAPP_PHONE_BUTTONS_MAX, "phone button"),
        }
    }

    pub(super) fn parse(raw: &str) -> Result<Self, String> {
        match raw
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "quick_reply" => Ok(ButtonType::QuickReply),
            "url" => Ok(ButtonType::Url),
            "phone_number" | "phone" => Ok(ButtonType::PhoneNumber),
            "" => Err("Choose the button's type: quick_reply, url or phone_number.".into()),
            other => Err(format!(
                "\"{other}\" is not a button type Herald supports: use quick_reply, url or phone_number."
            )),
        }
    }
}

fn check_label(
    errors: &mut FieldProblems,
    field: &str,
    kind: ChannelKind,
    raw: &str,
    limit: usize,
) -> String {
    let label = normalise(raw);
    if label.is_empty() {
        errors.add(field, "Enter the button's label.");
    }
    let len = char_len(&label);
    if len > limit {
        errors.add(
            field,
            format!("A button label has at most {limit} characters; this one has {len}."),
        );
    }
    if label.contains('\n') {
        errors.add(field, "A button label is one line.");
    }
    if label.contains("{{") || label.contains("}}") {
        errors.add(field, "A button label cannot have placeholders.");
    }
    if let Some(tag) = find_markup(&label) {
        errors.add(field, markup_message(kind, tag));
    }
    label
}

/// Checks the form of a link, recording any problem against `field`, and returns it trimmed;
/// the placeholder rules are the caller's.
fn check_link(
    errors: &mut FieldProblems,
    field: &str,
    raw: &str,
    https_only: bool,
    limit: usize,
) -> String {
    let url = raw.trim().to_owned();
    let problem = link_problem(&url, https_only, limit);
    if let Some(problem) = problem {
        errors.add(field, problem);
    }
    url
}

fn link_problem(url: &str, https_only: bool, limit: usize) -> Option<String> {
    if url.is_empty() {
        return Some("Enter the link, starting with https://.".into());
    }
    let len = char_len(url);
    if len > limit {
        return Some(format!(
            "A link has at most {limit} characters; this one has {len}."
        ));
    }
    if url.chars().any(char::is_whitespace) {
        return Some("A link cannot contain spaces.".into());
    }
    let lower = url.to_ascii_lowercase();
    let rest = if let Some(rest) = lower.strip_prefix("https://") {
        rest
    } else if let Some(rest) = lower.strip_prefix("http://").filter(|_| !https_only) {
        rest
    } else if https_only {
        return Some(format!("\"{url}\" must start with https://."));
    } else {
        return Some(format!("\"{url}\" must start with https:// or http://."));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains("{{") {
        return Some(format!(
            "\"{url}\" needs a domain after the scheme, before any placeholder."
        ));
    }
    None
}

/// A fixed https link (Viber's button and image): Infobip takes no placeholders there.
fn check_fixed_link(errors: &mut FieldProblems, field: &str, raw: &str) -> String {
    let url = check_link(errors, field, raw, true, WHATSAPP_BUTTON_URL_MAX);
    if url.contains("{{") {
        errors.add(field, "This link cannot have placeholders.");
    }
    url
}

fn check_whatsapp_buttons(errors: &mut FieldProblems, drafts: &[ButtonDraft]) -> Vec<Button> {
    let kind = ChannelKind::Whatsapp;
    let mut buttons = Vec::new();
    let mut counts: BTreeMap<ButtonType, usize> = BTreeMap::new();
    // Meta groups quick replies together: the run of quick-reply / other buttons may change
    // only once.
    let mut switches = 0;
    let mut previous_quick: Option<bool> = None;
    for (i, draft) in drafts.iter().enumerate().filter(|(_, b)| !b.is_blank()) {
        let field = |part: &str| format!("buttons[{i}].{part}");
        let label = check_label(
            errors,
            &field("text"),
            kind,
            &draft.text,
            WHATSAPP_BUTTON_LABEL_MAX,
        );
        let Some(button_type) = errors.check(&field("kind"), ButtonType::parse(&draft.kind)) else {
            continue;
        };
        let quick = button_type == ButtonType::QuickReply;
        if previous_quick.is_some_and(|p| p != quick) {
            switches += 1;
            if switches == 2 {
                errors.add(
                    field("kind"),
                    "Quick-reply buttons must be next to each other, before or after the other buttons (Meta groups them).",
                );
            }
        }
        previous_quick = Some(quick);
        let count = counts.entry(button_type).or_insert(0);
        *count += 1;
        let (max, what) = button_type.limit();
        if *count == max + 1 {
            errors.add(
                field("kind"),
                format!("A template has at most {max} {what}."),
            );
        }
        match button_type {
            ButtonType::QuickReply => buttons.push(Button::QuickReply { text: label }),
            ButtonType::Url => buttons.push(Button::Url {
                text: label,
                url: check_whatsapp_url(errors, &field("url"), &draft.url),
            }),
            ButtonType::PhoneNumber => buttons.push(Button::PhoneNumber {
                text: label,
                phone_number: check_phone(errors, &field("phone_number"), &draft.phone_number),
            }),
        }
    }
    let total = drafts.iter().filter(|b| !b.is_blank()).count();
    if total > WHATSAPP_BUTTONS_MAX {
        errors.add(
            "buttons",
            format!("A template has at most {WHATSAPP_BUTTONS_MAX} buttons; this one has {total}."),
        );
    }
    buttons
}

/// Meta: a URL button's link may end in one placeholder, `{{1}}`, which a send fills (with an
/// example required at review).
fn check_whatsapp_url(errors: &mut FieldProblems, field: &str, raw: &str) -> String {
    let url = check_link(errors, field, raw, false, WHATSAPP_BUTTON_URL_MAX);
    let scan = scan(&url);
    for problem in &scan.problems {
        errors.add(field, problem.clone());
    }
    let names: Vec<&str> = scan.placeholders().collect();
    if names.len() > 1 {
        errors.add(field, "A link can have one placeholder, at its end.");
    }
    if names.iter().any(|n| *n != "1") {
        errors.add(field, "Write the link's placeholder as {{1}}.");
    }
    if !names.is_empty() && !matches!(scan.pieces.last(), Some(Piece::Placeholder(_))) {
        errors.add(
            field,
            "The placeholder must be at the very end of the link: Meta appends the value to it.",
        );
    }
    url
}
/// Meta: a phone button calls a number of at most 20 characters; Herald stores it as E.164.
fn check_phone(errors: &mut FieldProblems, field: &str, raw: &str) -> String {
    let number = raw.trim();
    if number.is_empty() {
        errors.add(
            field,
            "Enter the number the button calls, e.g. +14155550100.",
        );
    } else if char_len(number) > WHATSAPP_BUTTON_PHONE_MAX {
        errors.add(
            field,
            format!(
                "A phone number on a button has at most {WHATSAPP_BUTTON_PHONE_MAX} characters."
            ),
        );
    } else if let Some(e164) = errors.check(field, E164::parse(number, None)) {
        return e164.into_inner();
    }
    number.to_owned()
}
/// Viber (Infobip): one button, with a title of at most 30 characters, opening an https link.
fn check_viber_button(errors: &mut FieldProblems, drafts: &[ButtonDraft]) -> Vec<Button> {
    let kind = ChannelKind::Viber;
    let rows: Vec<(usize, &ButtonDraft)> = drafts
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.is_blank())
        .collect();
    if rows.len() > 1 {
        errors.add("buttons", "A Viber message has one button at most.");
    }
    let Some((i, draft)) = rows.first() else {
        return Vec::new();
    };
    let field = |part: &str| format!("buttons[{i}].{part}");
    let kind_word = draft.kind.trim();
    if !kind_word.is_empty() && !kind_word.eq_ignore_ascii_case("url") {
        errors.add(
            field("kind"),
            "A Viber button opens a link: its type is url.",
        );
    }
    let text = check_label(
        errors,
        &field("text"),
        kind,
        &draft.text,
        VIBER_BUTTON_TITLE_MAX,
    );
    let url = check_fixed_link(errors, &field("url"), &draft.url);
    vec![Button::Url { text, url }]
}

fn check_image(errors: &mut FieldProblems, kind: ChannelKind, raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    if kind != ChannelKind::Viber {
        errors.add(
            "image_url",
            format!(
                "{} templates here have no image; only Viber ones do.",
                kind.label()
            ),
        );
        return None;
    }
    Some(check_fixed_link(errors, "image_url", raw))
}

/// A sample for every placeholder: Meta and Infobip review templates with their examples, and
/// the live preview shows them. SMS texts need none, but their samples still feed the preview.
fn check_samples(
    errors: &mut FieldProblems,
    kind: ChannelKind,
    slots: &[Slot<'_>],
    given: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut samples = BTreeMap::new();
    for slot in slots {
        if samples.contains_key(&slot.key) {
            continue;
        }
        let field = format!("samples.{}", slot.key);
        let value = given
            .get(&slot.key)
            .map(|v| normalise(v))
            .unwrap_or_default();
        if value.is_empty() {
            if kind != ChannelKind::Sms {
                errors.add(
                    field,
                    format!(
                        "Enter a sample value for {}: the provider reviews the template with it.",
                        slot.describe()
                    ),
                );
            }
            continue;
        }
        if let Err(reason) = render::check_value(kind, &value) {
            errors.add(
                field.clone(),
                format!("The sample for {}: {reason}", slot.describe()),
            );
        }
        let len = char_len(&value);
        if kind == ChannelKind::Viber && len > VIBER_EXAMPLE_MAX {
            errors.add(
                field,
                format!("A Viber example has at most {VIBER_EXAMPLE_MAX} characters; this one has {len}."),
            );
        }
        samples.insert(slot.key.clone(), value);
    }
    for (key, value) in given {
        if !value.trim().is_empty() && !slots.iter().any(|s| &s.key == key) {
            errors.add(
                format!("samples.{key}"),
                format!("There is no placeholder \"{key}\" in this template."),
            );
        }
    }
    samples
}
