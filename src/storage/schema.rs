// One schema for both backends. Only the SQL types a Diesel MultiConnection supports are used:
// BigInt, Integer, Text, Timestamp (booleans are Integer 0/1 or nullable timestamps).

diesel::table! {
    app_settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Text,
        role -> Text,
        password_hash -> Text,
        must_change_password -> Integer,
        disabled_at -> Nullable<Timestamp>,
        last_login_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        public_id -> Text,
        name -> Text,
        role -> Text,
        prefix -> Text,
        key_hash -> Text,
        created_by -> Nullable<BigInt>,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        rate_limit_per_minute -> Nullable<Integer>,
    }
}

diesel::table! {
    api_rate_windows (api_key_id, window_start) {
        api_key_id -> BigInt,
        window_start -> BigInt,
        hits -> Integer,
    }
}

diesel::table! {
    idempotency_keys (id) {
        id -> BigInt,
        api_key_id -> BigInt,
        key -> Text,
        route -> Text,
        fingerprint -> Text,
        status -> Integer,
        resource_kind -> Text,
        resource_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> BigInt,
        throttle_key -> Text,
        attempted_at -> Timestamp,
    }
}

diesel::table! {
    channels (id) {
        id -> BigInt,
        public_id -> Text,
        kind -> Text,
        provider -> Text,
        name -> Text,
        sender -> Text,
        settings -> Text,
        secrets -> Nullable<Text>,
        rate_limit_per_second -> Integer,
        disabled_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        tested_ok_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor_kind -> Text,
        actor_id -> Nullable<BigInt>,
        actor_label -> Text,
        action -> Text,
        subject_kind -> Text,
        subject_id -> Nullable<Text>,
        details -> Text,
    }
}

diesel::table! {
    contacts (id) {
        id -> BigInt,
        public_id -> Text,
        phone -> Text,
        name -> Text,
        email -> Text,
        language -> Text,
        time_zone -> Text,
        attributes -> Text,
        last_import_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        // issue 15: folded name, e-mail and attribute values (domain::contact::search_text)
        search_text -> Nullable<Text>,
    }
}

diesel::table! {
    attribute_keys (key) {
        key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    lists (id) {
        id -> BigInt,
        public_id -> Text,
        name -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    list_members (list_id, contact_id) {
        list_id -> BigInt,
        contact_id -> BigInt,
        added_at -> Timestamp,
    }
}

diesel::table! {
    contact_consents (contact_id, channel_kind) {
        contact_id -> BigInt,
        channel_kind -> Text,
        status -> Text,
        source -> Text,
        detail -> Text,
        changed_at -> Timestamp,
    }
}

diesel::table! {
    consent_events (id) {
        id -> BigInt,
        contact_id -> BigInt,
        channel_kind -> Text,
        status -> Text,
        source -> Text,
        detail -> Text,
        actor_label -> Text,
        occurred_at -> Timestamp,
    }
}

diesel::table! {
    contact_windows (contact_id, channel_id) {
        contact_id -> BigInt,
        channel_id -> BigInt,
        last_inbound_at -> Timestamp,
    }
}

diesel::table! {
    inbound_messages (id) {
        id -> BigInt,
        public_id -> Text,
        channel_id -> BigInt,
        contact_id -> BigInt,
        provider_message_id -> Nullable<Text>,
        body -> Text,
        received_at -> Timestamp,
        created_at -> Timestamp,
        // Issue 18 (retention).
        purged_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    messages (id) {
        id -> BigInt,
        public_id -> Text,
        channel_id -> BigInt,
        contact_id -> BigInt,
        to_address -> Text,
        campaign_id -> Nullable<BigInt>,
        template_id -> Nullable<BigInt>,
        content_kind -> Text,
        body -> Text,
        content -> Text,
        status -> Text,
        provider_message_id -> Nullable<Text>,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        lease_expires_at -> Nullable<Timestamp>,
        idempotency_key -> Nullable<Text>,
        requested_by -> Text,
        resend_of -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        delivered_at -> Nullable<Timestamp>,
        read_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
        leased_by -> Nullable<Text>,
        request_hash -> Nullable<Text>,
        // issue 18 (20261204100000_history): person | api | broadcast
        source -> Text,
        // Issue 18 (retention).
        purged_at -> Nullable<Timestamp>,
        purged_after_days -> Nullable<Integer>,
    }
}

diesel::table! {
    message_events (id) {
        id -> BigInt,
        message_id -> BigInt,
        status -> Text,
        source -> Text,
        detail -> Text,
        occurred_at -> Timestamp,
        // Issue 18 (message detail).
        payload -> Nullable<Text>,
    }
}

diesel::table! {
    imports (id) {
        id -> BigInt,
        public_id -> Text,
        file_name -> Text,
        status -> Text,
        list_id -> Nullable<BigInt>,
        bytes_total -> Nullable<BigInt>,
        bytes_read -> BigInt,
        rows_read -> BigInt,
        imported -> BigInt,
        updated -> BigInt,
        rejected -> BigInt,
        error -> Nullable<Text>,
        requested_by -> Text,
        created_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        header_cells -> Nullable<Text>,
    }
}

diesel::table! {
    import_rejections (id) {
        id -> BigInt,
        import_id -> BigInt,
        row_number -> BigInt,
        value -> Text,
        reason -> Text,
        original -> Text,
    }
}

diesel::table! {
    webhook_receipts (channel_id, event_id) {
        channel_id -> BigInt,
        event_id -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    early_statuses (id) {
        id -> BigInt,
        channel_id -> BigInt,
        provider_message_id -> Text,
        status -> Text,
        error_code -> Nullable<Text>,
        error_message -> Nullable<Text>,
        error_class -> Nullable<Text>,
        occurred_at -> Timestamp,
        received_at -> Timestamp,
        // Issue 18 (message detail).
        payload -> Nullable<Text>,
    }
}

diesel::table! {
    workers (id) {
        id -> Text,
        host -> Text,
        pid -> BigInt,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        stopped_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    channel_throttle (channel_id) {
        channel_id -> BigInt,
        next_slot_us -> BigInt,
        paused_until_us -> BigInt,
    }
}

diesel::joinable!(api_keys -> users (created_by));
diesel::joinable!(list_members -> lists (list_id));
diesel::joinable!(list_members -> contacts (contact_id));
diesel::joinable!(contact_consents -> contacts (contact_id));
diesel::joinable!(consent_events -> contacts (contact_id));
diesel::joinable!(contact_windows -> contacts (contact_id));
diesel::joinable!(contact_windows -> channels (channel_id));
diesel::joinable!(inbound_messages -> contacts (contact_id));
diesel::joinable!(inbound_messages -> channels (channel_id));
diesel::joinable!(messages -> contacts (contact_id));
diesel::joinable!(messages -> channels (channel_id));
diesel::joinable!(message_events -> messages (message_id));
diesel::joinable!(import_rejections -> imports (import_id));

diesel::allow_tables_to_appear_in_same_query!(
    app_settings,
    users,
    api_keys,
    login_attempts,
    channels,
    audit_log,
    contacts,
    attribute_keys,
    lists,
    list_members,
    contact_consents,
    consent_events,
    contact_windows,
    inbound_messages,
    messages,
    message_events,
    imports,
    import_rejections,
    webhook_receipts,
    early_statuses,
    workers,
    channel_throttle,
);

// Templates (migration 20261125190000_templates), kept together so they merge cleanly.

diesel::table! {
    templates (id) {
        id -> BigInt,
        public_id -> Text,
        channel_id -> BigInt,
        name -> Text,
        language -> Text,
        category -> Text,
        current_version_id -> Nullable<BigInt>,
        live_version_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        variable_sources -> Nullable<Text>,
    }
}

diesel::table! {
    template_versions (id) {
        id -> BigInt,
        template_id -> BigInt,
        number -> Integer,
        content -> Text,
        stage -> Text,
        author_id -> Nullable<BigInt>,
        author_label -> Text,
        editor_id -> Nullable<BigInt>,
        editor_label -> Text,
        review_status -> Text,
        review_note -> Nullable<Text>,
        reviewer_id -> Nullable<BigInt>,
        reviewer_label -> Nullable<Text>,
        submitted_at -> Nullable<Timestamp>,
        reviewed_at -> Nullable<Timestamp>,
        provider_status -> Text,
        provider_reason -> Nullable<Text>,
        provider_note -> Nullable<Text>,
        provider_template_id -> Nullable<Text>,
        provider_error -> Nullable<Text>,
        provider_submitted_at -> Nullable<Timestamp>,
        provider_updated_at -> Nullable<Timestamp>,
        provider_checked_at -> Nullable<Timestamp>,
        superseded_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(templates -> channels (channel_id));
diesel::joinable!(template_versions -> templates (template_id));

diesel::allow_tables_to_appear_in_same_query!(templates, template_versions, channels);

// Server-side sessions (migrations 20261203110000_sessions, 20261203120000_session_reveals),
// kept together so they merge cleanly.

diesel::table! {
    sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        expires_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    session_reveals (id) {
        id -> BigInt,
        session_id -> BigInt,
        page -> Text,
        sealed -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(session_reveals -> sessions (session_id));

diesel::allow_tables_to_appear_in_same_query!(sessions, session_reveals, users);

diesel::table! {
    broadcasts (id) {
        id -> BigInt,
        public_id -> Text,
        name -> Text,
        channel_id -> BigInt,
        state -> Text,
        audience -> Text,
        message -> Text,
        send_at -> Nullable<Timestamp>,
        time_zone -> Text,
        expires_at -> Nullable<Timestamp>,
        pause_reason -> Nullable<Text>,
        created_by -> Nullable<BigInt>,
        created_by_label -> Text,
        approval_requested_by -> Nullable<BigInt>,
        approved_by_label -> Nullable<Text>,
        review_note -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Text>,
        recipients -> BigInt,
        launched_at -> Nullable<Timestamp>,
        started_at -> Nullable<Timestamp>,
        resumed_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        timing -> Nullable<Text>,
        // issue 18 (20261204120000_broadcast_results): the broadcast this one follows up
        follow_up_of -> Nullable<BigInt>,
    }
}

diesel::table! {
    broadcast_recipients (id) {
        id -> BigInt,
        broadcast_id -> BigInt,
        contact_id -> BigInt,
        status -> Text,
        reason -> Nullable<Text>,
        zone -> Nullable<Text>,
        // issue 18 (20261204120000_broadcast_results): the recipient's first attributed reply
        replied_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(broadcast_recipients -> broadcasts (broadcast_id));
diesel::joinable!(broadcast_recipients -> contacts (contact_id));
diesel::joinable!(broadcasts -> channels (channel_id));

diesel::allow_tables_to_appear_in_same_query!(broadcasts, broadcast_recipients);
diesel::allow_tables_to_appear_in_same_query!(broadcasts, channels);
diesel::allow_tables_to_appear_in_same_query!(broadcasts, messages);
diesel::allow_tables_to_appear_in_same_query!(broadcast_recipients, contacts);
diesel::allow_tables_to_appear_in_same_query!(broadcast_recipients, messages);

// --- issue 17: a CSV upload as a broadcast's audience (20261203170000_broadcast_csv) ---
diesel::table! {
    broadcast_csv_rows (id) {
        id -> BigInt,
        broadcast_id -> BigInt,
        import_id -> BigInt,
        line -> BigInt,
        contact_id -> BigInt,
        variables -> Text,
    }
}

diesel::joinable!(broadcast_csv_rows -> broadcasts (broadcast_id));
diesel::joinable!(broadcast_csv_rows -> imports (import_id));
diesel::joinable!(broadcast_csv_rows -> contacts (contact_id));
diesel::allow_tables_to_appear_in_same_query!(broadcast_csv_rows, contacts);
// --- end issue 17 CSV audience ---

// --- issue 18: broadcast results (20261204120000_broadcast_results) ---
diesel::table! {
    broadcast_follow_up_contacts (broadcast_id, contact_id) {
        broadcast_id -> BigInt,
        contact_id -> BigInt,
    }
}

diesel::joinable!(broadcast_follow_up_contacts -> broadcasts (broadcast_id));
diesel::joinable!(broadcast_follow_up_contacts -> contacts (contact_id));
diesel::allow_tables_to_appear_in_same_query!(broadcast_follow_up_contacts, contacts);
// --- end issue 18 broadcast results ---

// --- issue 19: status callbacks to the business (20261205100000_status_callbacks) ---
diesel::table! {
    webhook_endpoints (id) {
        id -> BigInt,
        public_id -> Text,
        url -> Text,
        description -> Text,
        /// The event types wanted, space-separated.
        events -> Text,
        enabled -> Integer,
        allow_private_network -> Integer,
        /// Sealed (see `auth::sealed`).
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_secret_until -> Nullable<Timestamp>,
        failing_since -> Nullable<Timestamp>,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_subscriptions (event_type, endpoint_id) {
        event_type -> Text,
        endpoint_id -> BigInt,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> BigInt,
        event_type -> Text,
        subject_id -> BigInt,
        detail -> Text,
        occurred_at -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        endpoint_id -> BigInt,
        webhook_id -> Text,
        event_type -> Text,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_status_code -> Nullable<Integer>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> BigInt,
        delivery_id -> BigInt,
        attempted_at -> Timestamp,
        status_code -> Nullable<Integer>,
        duration_ms -> Integer,
        response_excerpt -> Text,
        error -> Nullable<Text>,
    }
}

diesel::joinable!(webhook_subscriptions -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::allow_tables_to_appear_in_same_query!(
    webhook_endpoints,
    webhook_subscriptions,
    webhook_deliveries,
    webhook_attempts,
);
// --- end issue 19 status callbacks ---

// --- issue 20: triggers (20261205121000_triggers) ---
diesel::table! {
    triggers (id) {
        id -> BigInt,
        public_id -> Text,
        slug -> Text,
        name -> Text,
        channel_id -> BigInt,
        template_id -> Nullable<BigInt>,
        text -> Nullable<Text>,
        scheme -> Text,
        secret -> Text,
        mapping -> Text,
        enabled -> Integer,
        created_by_label -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    trigger_events (id) {
        id -> BigInt,
        trigger_id -> BigInt,
        dedup_key -> Nullable<Text>,
        delay_key -> Nullable<Text>,
        outcome -> Text,
        reason -> Nullable<Text>,
        message_id -> Nullable<BigInt>,
        payload -> Nullable<Text>,
        received_at -> Timestamp,
    }
}

diesel::joinable!(trigger_events -> triggers (trigger_id));
diesel::joinable!(triggers -> channels (channel_id));
diesel::joinable!(trigger_events -> messages (message_id));
diesel::allow_tables_to_appear_in_same_query!(triggers, trigger_events);
diesel::allow_tables_to_appear_in_same_query!(triggers, channels);
diesel::allow_tables_to_appear_in_same_query!(triggers, templates);
diesel::allow_tables_to_appear_in_same_query!(trigger_events, messages);
// --- end issue 20 triggers ---

// --- issue 20: reminders (20261205131000_reminders) ---
diesel::table! {
    reminder_rules (id) {
        id -> BigInt,
        public_id -> Text,
        name -> Text,
        channel_id -> BigInt,
        template_id -> Nullable<BigInt>,
        text -> Nullable<Text>,
        variables -> Text,
        attribute -> Text,
        offset_minutes -> Nullable<Integer>,
        at_time -> Nullable<Text>,
        day_offset -> Integer,
        time_zone -> Text,
        grace_minutes -> Integer,
        enabled -> Integer,
        scanned_at -> Nullable<Timestamp>,
        scanned_id -> BigInt,
        created_by_label -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    reminders (id) {
        id -> BigInt,
        rule_id -> BigInt,
        contact_id -> BigInt,
        attribute_value -> Text,
        due_at -> Nullable<Timestamp>,
        state -> Text,
        reason -> Nullable<Text>,
        message_id -> Nullable<BigInt>,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(reminders -> reminder_rules (rule_id));
diesel::joinable!(reminders -> contacts (contact_id));
diesel::allow_tables_to_appear_in_same_query!(reminders, reminder_rules);
diesel::allow_tables_to_appear_in_same_query!(reminders, contacts);
diesel::allow_tables_to_appear_in_same_query!(reminders, messages);
// --- end issue 20 reminders ---
