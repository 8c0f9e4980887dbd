/*
 * chat-router: a hookyard routing plugin written in C.
 *
 * Reads the JSON body's `type` field. Pings and events without a type are
 * dropped (with a reason); every other event is reshaped into a chat message
 * for the `chat_target` target, and events with `"severity": "critical"` are
 * also sent unchanged to the `pager_target` target. A body that is not JSON
 * is an error, which marks the event failed.
 *
 * Built into a WebAssembly component by scripts/build-c-plugins.sh (see
 * docs/plugins-c.md). `plugin.h` is generated from wit/plugin.wit by
 * `wit-bindgen c` at build time.
 *
 * Ownership, as the generated bindings define it:
 *  - `exports_plugin_handle` owns `*event` and must free it
 *    (plugin_event_free);
 *  - everything reachable from the returned outcome or error string must be
 *    heap memory (malloc/realloc): the generated `cabi_post_handle` frees it
 *    after hookyard has copied it out, so never return static strings;
 *  - imports borrow their arguments (the caller frees them afterwards) and
 *    return lists the caller owns (config: plugin_list_tuple2_string_string_free).
 */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"

static const char LANGUAGE[] = "c";
static const char DEFAULT_CHAT_TARGET[] = "chat";
static const char DEFAULT_PAGER_TARGET[] = "pager";

/* ---- a growable byte buffer (malloc'd, so it can be handed to the ABI) ---- */

typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} buf_t;

static void buf_put(buf_t *b, const void *data, size_t n) {
    if (n == 0) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) abort();
            cap *= 2;
        }
        uint8_t *p = realloc(b->ptr, cap);
        if (!p) abort(); /* a trap: hookyard marks the event failed */
        b->ptr = p;
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, data, n);
    b->len += n;
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_put_str(buf_t *b, const plugin_string_t *s) { buf_put(b, s->ptr, s->len); }

/* Appends `data` as a JSON string literal (quotes included). The input is
 * valid UTF-8 (WIT strings always are), which passes through unchanged. */
static void buf_put_json_string(buf_t *b, const uint8_t *data, size_t n) {
    static const char hex[] = "0123456789abcdef";
    buf_put(b, "\"", 1);
    size_t run = 0; /* start of the pending run of bytes needing no escape */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = data[i];
        const char *esc = NULL;
        char u[6];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c >= 0x20) continue;
            break;
        }
        buf_put(b, data + run, i - run);
        run = i + 1;
        if (esc) {
            buf_puts(b, esc);
        } else {
            memcpy(u, "\\u00", 4);
            u[4] = hex[c >> 4];
            u[5] = hex[c & 0xF];
            buf_put(b, u, sizeof u);
        }
    }
    buf_put(b, data + run, n - run);
    buf_put(b, "\"", 1);
}

/* Moves a buffer into a WIT string (ownership passes to the bindings). */
static plugin_string_t buf_into_string(buf_t *b) {
    plugin_string_t s = {b->ptr, b->len};
    if (b->len == 0) free(b->ptr); /* the bindings never free empty strings */
    b->ptr = NULL;
    b->len = b->cap = 0;
    return s;
}

/* ---- host helpers ---- */

/* Logs `b` at info level and frees it (log borrows its argument). */
static void log_info(buf_t *b) {
    plugin_string_t msg = {b->ptr, b->len};
    hookyard_plugin_host_log(HOOKYARD_PLUGIN_HOST_LEVEL_INFO, &msg);
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* A freshly allocated copy of config[key], or of `fallback` if absent. */
static plugin_string_t config_value(const plugin_list_tuple2_string_string_t *config,
                                    const char *key, const char *fallback) {
    size_t key_len = strlen(key);
    plugin_string_t out;
    for (size_t i = 0; i < config->len; i++) {
        const plugin_tuple2_string_string_t *kv = &config->ptr[i];
        if (kv->f0.len == key_len && memcmp(kv->f0.ptr, key, key_len) == 0) {
            plugin_string_dup_n(&out, (const char *)kv->f1.ptr, kv->f1.len);
            return out;
        }
    }
    plugin_string_dup(&out, fallback);
    return out;
}

static bool json_str_eq(const json_str_t *s, const char *lit) {
    size_t n = strlen(lit);
    return s->ptr && s->len == n && memcmp(s->ptr, lit, n) == 0;
}

/* Allocates `n` header pairs for a delivery; fill them with set_header. */
static plugin_list_tuple2_string_string_t headers_new(size_t n) {
    plugin_list_tuple2_string_string_t h;
    h.ptr = malloc(n * sizeof *h.ptr);
    if (!h.ptr) abort();
    h.len = n;
    return h;
}

static void set_header(plugin_list_tuple2_string_string_t *h, size_t i, const char *name,
                       const char *value) {
    plugin_string_dup(&h->ptr[i].f0, name);
    plugin_string_dup(&h->ptr[i].f1, value);
}

/* ---- the decisions ---- */

static bool drop_event(const plugin_event_t *event, plugin_outcome_t *ret, const char *reason) {
    buf_t line = {0};
    buf_puts(&line, "event ");
    buf_put_str(&line, &event->id);
    buf_puts(&line, " dropped: ");
    buf_puts(&line, reason);
    log_info(&line);

    ret->tag = HOOKYARD_PLUGIN_TYPES_OUTCOME_DROP;
    plugin_string_dup(&ret->val.drop, reason);
    return true;
}

static bool fail_not_json(const plugin_event_t *event, plugin_string_t *err, const char *why) {
    buf_t line = {0};
    buf_puts(&line, "event ");
    buf_put_str(&line, &event->id);
    buf_puts(&line, " failed: body is not JSON");
    log_info(&line);

    buf_t msg = {0};
    buf_puts(&msg, "body is not JSON: ");
    buf_puts(&msg, why);
    *err = buf_into_string(&msg);
    return false;
}

static bool route(const plugin_event_t *event, const json_fields_t *fields,
                  plugin_outcome_t *ret) {
    plugin_list_tuple2_string_string_t config;
    hookyard_plugin_host_config(&config);

    bool critical = json_str_eq(&fields->severity, "critical");
    size_t count = critical ? 2 : 1;
    hookyard_plugin_types_delivery_t *deliveries = malloc(count * sizeof *deliveries);
    if (!deliveries) abort();

    /* {"text": "<type> from <source>", "event_id": "<id>", "payload": <body>} */
    buf_t text = {0};
    buf_put(&text, fields->type.ptr, fields->type.len);
    buf_puts(&text, " from ");
    buf_put_str(&text, &event->source);
    buf_t body = {0};
    buf_puts(&body, "{\"text\": ");
    buf_put_json_string(&body, text.ptr, text.len);
    buf_puts(&body, ", \"event_id\": ");
    buf_put_json_string(&body, event->id.ptr, event->id.len);
    buf_puts(&body, ", \"payload\": ");
    buf_put(&body, event->body.ptr, event->body.len); /* validated JSON, verbatim */
    buf_puts(&body, "}");
    free(text.ptr);

    hookyard_plugin_types_delivery_t *chat = &deliveries[0];
    chat->target = config_value(&config, "chat_target", DEFAULT_CHAT_TARGET);
    chat->headers = headers_new(2);
    set_header(&chat->headers, 0, "content-type", "application/json");
    set_header(&chat->headers, 1, "x-hookyard-plugin", LANGUAGE);
    chat->body.is_some = true;
    chat->body.val.ptr = body.ptr; /* ownership moves to the outcome */
    chat->body.val.len = body.len;

    if (critical) {
        /* body none: hookyard sends the event's body unchanged. */
        hookyard_plugin_types_delivery_t *pager = &deliveries[1];
        pager->target = config_value(&config, "pager_target", DEFAULT_PAGER_TARGET);
        pager->headers = headers_new(1);
        set_header(&pager->headers, 0, "x-hookyard-plugin", LANGUAGE);
        pager->body.is_some = false;
    }
    plugin_list_tuple2_string_string_free(&config);

    buf_t line = {0};
    buf_puts(&line, "event ");
    buf_put_str(&line, &event->id);
    buf_puts(&line, " (");
    buf_put(&line, fields->type.ptr, fields->type.len);
    buf_puts(&line, ") -> ");
    for (size_t i = 0; i < count; i++) {
        if (i) buf_puts(&line, ", ");
        buf_put_str(&line, &deliveries[i].target);
    }
    log_info(&line);

    ret->tag = HOOKYARD_PLUGIN_TYPES_OUTCOME_DELIVER;
    ret->val.deliver.ptr = deliveries;
    ret->val.deliver.len = count;
    return true;
}

bool exports_plugin_handle(plugin_event_t *event, plugin_outcome_t *ret, plugin_string_t *err) {
    json_fields_t fields;
    char why[128];
    bool ok;
    if (!json_scan(event->body.ptr, event->body.len, &fields, why, sizeof why)) {
        ok = fail_not_json(event, err, why);
    } else if (!fields.type.ptr) {
        ok = drop_event(event, ret, "no \"type\" field");
    } else if (json_str_eq(&fields.type, "ping")) {
        ok = drop_event(event, ret, "ping events are not routed");
    } else {
        ok = route(event, &fields, ret);
    }
    json_fields_free(&fields);
    plugin_event_free(event); /* exports own their arguments */
    return ok;
}
