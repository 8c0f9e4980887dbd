/*
 * A minimal, allocation-light JSON validator for hookyard's C chat-router.
 *
 * It checks a whole document against RFC 8259 (strict: no comments, no
 * trailing commas, no BOM, strings must be valid UTF-8, no lone surrogates
 * in \u escapes, nesting at most JSON_MAX_DEPTH deep) and, while doing so,
 * picks out the top-level object's string members `type` and `severity`
 * (decoded to UTF-8; the last occurrence wins, as in most JSON libraries).
 *
 * It builds no tree: the only allocations are the decoded copies of those
 * two fields (and of top-level keys while comparing them).
 */
#ifndef HOOKYARD_C_JSON_H
#define HOOKYARD_C_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deeper documents are rejected instead of risking the wasm stack. */
#define JSON_MAX_DEPTH 128

/* A decoded string: `ptr` is malloc'd and NUL-terminated (it may also
 * contain NULs from \u0000 escapes, so use `len`); NULL when absent. */
typedef struct {
    char *ptr;
    size_t len;
} json_str_t;

typedef struct {
    /* Top-level string member "type", if the document is an object and has
     * one whose value is a string. */
    json_str_t type;
    /* Top-level string member "severity", likewise. */
    json_str_t severity;
} json_fields_t;

/*
 * Validates `len` bytes at `data` as one JSON document.
 *
 * On success returns true and fills `out` (free it with json_fields_free).
 * On failure returns false, leaves `out` empty, and writes a short,
 * NUL-terminated reason such as "expected value at line 1 column 1" into
 * `reason` (at most `reason_cap` bytes including the NUL).
 *
 * Allocation failure aborts (a wasm trap: hookyard marks the event failed).
 */
bool json_scan(const uint8_t *data, size_t len, json_fields_t *out, char *reason,
               size_t reason_cap);

void json_fields_free(json_fields_t *fields);

#endif
