/*
 * {{name}}: a hookyard routing plugin in C.
 *
 * hookyard calls exports_plugin_handle once per received event. Fill `ret`
 * and return true (drop or deliver), or fill `err` and return false to mark
 * the event failed. Ownership (see gen/plugin.h): the function owns `*event`
 * and frees it; everything in `ret`/`err` must be malloc'd, the bindings
 * free it after hookyard has copied it. `event->version` (contract 0.2.0)
 * is the event's version when `event->version.is_some`.
 */
#include "plugin.h"

#include <stdlib.h>
#include <string.h>

/* config[key] as a fresh string, or `fallback`. */
static plugin_string_t config_value(const char *key, const char *fallback) {
    plugin_list_tuple2_string_string_t config;
    hookyard_plugin_host_config(&config);
    plugin_string_t out;
    size_t n = strlen(key);
    for (size_t i = 0; i < config.len; i++) {
        plugin_tuple2_string_string_t *kv = &config.ptr[i];
        if (kv->f0.len == n && memcmp(kv->f0.ptr, key, n) == 0) {
            plugin_string_dup_n(&out, (const char *)kv->f1.ptr, kv->f1.len);
            plugin_list_tuple2_string_string_free(&config);
            return out;
        }
    }
    plugin_list_tuple2_string_string_free(&config);
    plugin_string_dup(&out, fallback);
    return out;
}

bool exports_plugin_handle(plugin_event_t *event, plugin_outcome_t *ret, plugin_string_t *err) {
    (void)err;
    if (event->body.len == 0) {
        ret->tag = HOOKYARD_PLUGIN_TYPES_OUTCOME_DROP;
        plugin_string_dup(&ret->val.drop, "empty body");
        plugin_event_free(event);
        return true;
    }
    /* `[plugins.{{name}}] config = { target = "..." }` in hookyard.toml. */
    hookyard_plugin_types_delivery_t *d = malloc(sizeof *d);
    if (!d) abort();
    d->target = config_value("target", "default");
    d->headers.len = 1;
    d->headers.ptr = malloc(sizeof *d->headers.ptr);
    if (!d->headers.ptr) abort();
    plugin_string_dup(&d->headers.ptr[0].f0, "x-routed-by");
    plugin_string_dup(&d->headers.ptr[0].f1, "{{name}}");
    d->body.is_some = false; /* the event's body, unchanged */

    plugin_string_t msg;
    plugin_string_dup(&msg, "routing one event");
    hookyard_plugin_host_log(HOOKYARD_PLUGIN_HOST_LEVEL_INFO, &msg);
    plugin_string_free(&msg);

    ret->tag = HOOKYARD_PLUGIN_TYPES_OUTCOME_DELIVER;
    ret->val.deliver.ptr = d;
    ret->val.deliver.len = 1;
    plugin_event_free(event);
    return true;
}
