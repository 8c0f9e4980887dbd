/*
 * Minimal JSON validator; see json.h. Recursive descent over the bytes, with
 * an explicit depth limit. Error messages follow serde_json's wording so the
 * reasons look alike across hookyard's plugin languages.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t pos;
    /* First error: a static message and the byte offset it happened at. */
    const char *err;
    size_t err_pos;
    json_fields_t *out;
} parser_t;

static bool fail(parser_t *ps, const char *msg) {
    if (!ps->err) {
        ps->err = msg;
        ps->err_pos = ps->pos;
    }
    return false;
}

static bool at_end(const parser_t *ps) { return ps->pos >= ps->len; }

static uint8_t peek(const parser_t *ps) { return ps->data[ps->pos]; }

static void skip_ws(parser_t *ps) {
    while (!at_end(ps)) {
        uint8_t c = peek(ps);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void str_free(json_str_t *s) {
    free(s->ptr);
    s->ptr = NULL;
    s->len = 0;
}

void json_fields_free(json_fields_t *fields) {
    str_free(&fields->type);
    str_free(&fields->severity);
}

static int hex_val(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at data[at..at+4); -1 if any is not hex. */
static long hex4(const uint8_t *data, size_t at) {
    long v = 0;
    for (size_t i = 0; i < 4; i++) {
        int h = hex_val(data[at + i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Length of the valid UTF-8 sequence starting at s[0] (with `avail` bytes
 * available), or 0 if it is not valid (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq_len(const uint8_t *s, size_t avail) {
    uint8_t c = s[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) { n = 3; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
    else if (c == 0xED) { n = 3; hi = 0x9F; }
    else if (c == 0xF0) { n = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) { n = 4; hi = 0x8F; }
    else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

static size_t utf8_put(char *out, unsigned long cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decodes the already validated string contents data[start..end) (between
 * the quotes). Escapes only ever shrink, so end - start bytes suffice.
 */
static json_str_t decode_span(const uint8_t *data, size_t start, size_t end) {
    json_str_t s;
    s.ptr = xmalloc(end - start + 1);
    size_t o = 0;
    size_t i = start;
    while (i < end) {
        uint8_t c = data[i];
        if (c != '\\') {
            s.ptr[o++] = (char)c;
            i++;
            continue;
        }
        uint8_t e = data[i + 1];
        i += 2;
        switch (e) {
        case 'b': s.ptr[o++] = '\b'; break;
        case 'f': s.ptr[o++] = '\f'; break;
        case 'n': s.ptr[o++] = '\n'; break;
        case 'r': s.ptr[o++] = '\r'; break;
        case 't': s.ptr[o++] = '\t'; break;
        case 'u': {
            unsigned long cp = (unsigned long)hex4(data, i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* Validation guaranteed a low surrogate escape follows. */
                unsigned long low = (unsigned long)hex4(data, i + 2);
                i += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            o += utf8_put(s.ptr + o, cp);
            break;
        }
        default: /* '"', '\\', '/' */
            s.ptr[o++] = (char)e;
            break;
        }
    }
    s.ptr[o] = '\0';
    s.len = o;
    return s;
}

/*
 * Validates a string starting at the opening quote. On success the contents
 * (without quotes) are data[*start..*end) and pos is past the closing quote.
 */
static bool scan_string(parser_t *ps, size_t *start, size_t *end) {
    ps->pos++; /* opening quote */
    *start = ps->pos;
    for (;;) {
        if (at_end(ps)) return fail(ps, "EOF while parsing a string");
        uint8_t c = peek(ps);
        if (c == '"') {
            *end = ps->pos;
            ps->pos++;
            return true;
        }
        if (c < 0x20)
            return fail(ps, "control character (\\u0000-\\u001F) found while parsing a string");
        if (c >= 0x80) {
            size_t n = utf8_seq_len(ps->data + ps->pos, ps->len - ps->pos);
            if (n == 0) return fail(ps, "invalid UTF-8 in string");
            ps->pos += n;
            continue;
        }
        if (c != '\\') {
            ps->pos++;
            continue;
        }
        /* Escape sequence. */
        if (ps->len - ps->pos < 2) {
            ps->pos = ps->len;
            return fail(ps, "EOF while parsing a string");
        }
        uint8_t e = ps->data[ps->pos + 1];
        if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
            e == 'r' || e == 't') {
            ps->pos += 2;
            continue;
        }
        if (e != 'u') {
            ps->pos++;
            return fail(ps, "invalid escape");
        }
        if (ps->len - ps->pos < 6) {
            ps->pos = ps->len;
            return fail(ps, "EOF while parsing a string");
        }
        long cp = hex4(ps->data, ps->pos + 2);
        if (cp < 0) {
            ps->pos += 2;
            return fail(ps, "invalid escape");
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail(ps, "lone trailing surrogate in hex escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* Must be followed by \uDC00..\uDFFF. */
            size_t next = ps->pos + 6;
            long low = -1;
            if (ps->len - next >= 6 && ps->data[next] == '\\' && ps->data[next + 1] == 'u')
                low = hex4(ps->data, next + 2);
            if (low < 0xDC00 || low > 0xDFFF)
                return fail(ps, "lone leading surrogate in hex escape");
            ps->pos += 12;
            continue;
        }
        ps->pos += 6;
    }
}

static bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static bool scan_number(parser_t *ps) {
    if (peek(ps) == '-') ps->pos++;
    if (at_end(ps)) return fail(ps, "EOF while parsing a value");
    if (peek(ps) == '0') {
        ps->pos++;
    } else if (is_digit(peek(ps))) {
        while (!at_end(ps) && is_digit(peek(ps))) ps->pos++;
    } else {
        return fail(ps, "invalid number");
    }
    if (!at_end(ps) && peek(ps) == '.') {
        ps->pos++;
        if (at_end(ps)) return fail(ps, "EOF while parsing a value");
        if (!is_digit(peek(ps))) return fail(ps, "invalid number");
        while (!at_end(ps) && is_digit(peek(ps))) ps->pos++;
    }
    if (!at_end(ps) && (peek(ps) == 'e' || peek(ps) == 'E')) {
        ps->pos++;
        if (!at_end(ps) && (peek(ps) == '+' || peek(ps) == '-')) ps->pos++;
        if (at_end(ps)) return fail(ps, "EOF while parsing a value");
        if (!is_digit(peek(ps))) return fail(ps, "invalid number");
        while (!at_end(ps) && is_digit(peek(ps))) ps->pos++;
    }
    return true;
}

static bool scan_literal(parser_t *ps, const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i < n; i++) {
        if (at_end(ps)) return fail(ps, "EOF while parsing a value");
        if (peek(ps) != (uint8_t)word[i]) return fail(ps, "expected ident");
        ps->pos++;
    }
    return true;
}

static bool scan_value(parser_t *ps, int depth);

/* Which field a top-level key names, if any. */
static json_str_t *field_for_key(parser_t *ps, size_t start, size_t end) {
    /* The longest spelling of a wanted key is "severity" with every letter
     * \u-escaped (6 bytes each); longer raw keys cannot match. */
    if (end - start > 6 * 8) return NULL;
    json_str_t key = decode_span(ps->data, start, end);
    json_str_t *field = NULL;
    if (key.len == 4 && memcmp(key.ptr, "type", 4) == 0)
        field = &ps->out->type;
    else if (key.len == 8 && memcmp(key.ptr, "severity", 8) == 0)
        field = &ps->out->severity;
    str_free(&key);
    return field;
}

static bool scan_object(parser_t *ps, int depth) {
    ps->pos++; /* '{' */
    skip_ws(ps);
    if (at_end(ps)) return fail(ps, "EOF while parsing an object");
    if (peek(ps) == '}') {
        ps->pos++;
        return true;
    }
    for (;;) {
        if (at_end(ps)) return fail(ps, "EOF while parsing an object");
        if (peek(ps) != '"')
            return fail(ps, peek(ps) == '}' ? "trailing comma" : "key must be a string");
        size_t kstart, kend;
        if (!scan_string(ps, &kstart, &kend)) return false;
        json_str_t *field = depth == 1 ? field_for_key(ps, kstart, kend) : NULL;
        skip_ws(ps);
        if (at_end(ps)) return fail(ps, "EOF while parsing an object");
        if (peek(ps) != ':') return fail(ps, "expected `:`");
        ps->pos++;
        skip_ws(ps);
        if (field && !at_end(ps) && peek(ps) == '"') {
            size_t vstart, vend;
            if (!scan_string(ps, &vstart, &vend)) return false;
            str_free(field); /* a later duplicate key wins */
            *field = decode_span(ps->data, vstart, vend);
        } else {
            if (!scan_value(ps, depth)) return false;
            if (field) str_free(field); /* present, but not a string */
        }
        skip_ws(ps);
        if (at_end(ps)) return fail(ps, "EOF while parsing an object");
        uint8_t c = peek(ps);
        ps->pos++;
        if (c == '}') return true;
        if (c != ',') {
            ps->pos--;
            return fail(ps, "expected `,` or `}`");
        }
        skip_ws(ps);
    }
}

static bool scan_array(parser_t *ps, int depth) {
    ps->pos++; /* '[' */
    skip_ws(ps);
    if (at_end(ps)) return fail(ps, "EOF while parsing a list");
    if (peek(ps) == ']') {
        ps->pos++;
        return true;
    }
    for (;;) {
        if (!at_end(ps) && peek(ps) == ']') return fail(ps, "trailing comma");
        if (!scan_value(ps, depth)) return false;
        skip_ws(ps);
        if (at_end(ps)) return fail(ps, "EOF while parsing a list");
        uint8_t c = peek(ps);
        ps->pos++;
        if (c == ']') return true;
        if (c != ',') {
            ps->pos--;
            return fail(ps, "expected `,` or `]`");
        }
        skip_ws(ps);
    }
}

/* `depth` is the nesting depth of the value's parent (0 at top level). */
static bool scan_value(parser_t *ps, int depth) {
    if (at_end(ps)) return fail(ps, "EOF while parsing a value");
    uint8_t c = peek(ps);
    switch (c) {
    case '{':
    case '[':
        if (depth >= JSON_MAX_DEPTH) return fail(ps, "recursion limit exceeded");
        return c == '{' ? scan_object(ps, depth + 1) : scan_array(ps, depth + 1);
    case '"': {
        size_t start, end;
        return scan_string(ps, &start, &end);
    }
    case 't':
        return scan_literal(ps, "true");
    case 'f':
        return scan_literal(ps, "false");
    case 'n':
        return scan_literal(ps, "null");
    default:
        if (c == '-' || is_digit(c)) return scan_number(ps);
        return fail(ps, "expected value");
    }
}

/* Bounded appends to the reason buffer; return the new length. */
static size_t put_str(char *buf, size_t cap, size_t at, const char *s) {
    while (*s && at + 1 < cap) buf[at++] = *s++;
    return at;
}

static size_t put_uint(char *buf, size_t cap, size_t at, size_t v) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && at + 1 < cap) buf[at++] = digits[--n];
    return at;
}

bool json_scan(const uint8_t *data, size_t len, json_fields_t *out, char *reason,
               size_t reason_cap) {
    memset(out, 0, sizeof *out);
    parser_t ps = {.data = data, .len = len, .pos = 0, .err = NULL, .err_pos = 0, .out = out};
    skip_ws(&ps);
    bool ok = scan_value(&ps, 0);
    if (ok) {
        skip_ws(&ps);
        if (!at_end(&ps)) ok = fail(&ps, "trailing characters");
    }
    if (ok) return true;

    json_fields_free(out);
    /* "<message> at line L column C", both 1-based, column in bytes. */
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < ps.err_pos && i < len; i++) {
        if (data[i] == '\n') {
            line++;
            line_start = i + 1;
        }
    }
    if (reason_cap == 0) return false;
    size_t at = 0;
    at = put_str(reason, reason_cap, at, ps.err);
    at = put_str(reason, reason_cap, at, " at line ");
    at = put_uint(reason, reason_cap, at, line);
    at = put_str(reason, reason_cap, at, " column ");
    at = put_uint(reason, reason_cap, at, ps.err_pos - line_start + 1);
    reason[at] = '\0';
    return false;
}
