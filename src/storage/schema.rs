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
        session_epoch -> Integer,
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

diesel::joinable!(api_keys -> users (created_by));

diesel::allow_tables_to_appear_in_same_query!(
    app_settings,
    users,
    api_keys,
    login_attempts,
    channels,
    audit_log
);
