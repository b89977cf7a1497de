/* results_schema.c — the schema's statuses and version (results.h): what every writer stamps on
 * a file and every reader checks, so a status or version this build does not know is refused
 * by name instead of being read as something else. The rule: docs/results-schema.md. */
#include "core/results.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define ATTN_STATUS_ROW(e, name, since) {e, name, since},
static const struct {
    attn_status_t s;
    const char *name;
    int since;
} statuses[] = {ATTN_STATUSES(ATTN_STATUS_ROW)};
#undef ATTN_STATUS_ROW

int results_schema_version(void) {
    int v = ATTN_RESULTS_BASE_VERSION;
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        v = statuses[i].since > v ? statuses[i].since : v;
    return v;
}

const char *results_schema_name(void) {
    static char name[48];
    snprintf(name, sizeof name, "%s%d", ATTN_RESULTS_SCHEMA_PREFIX, results_schema_version());
    return name;
}

int results_schema_parse(const char *schema) {
    size_t k = strlen(ATTN_RESULTS_SCHEMA_PREFIX);
    if (!schema || strncmp(schema, ATTN_RESULTS_SCHEMA_PREFIX, k))
        return 0;
    const char *d = schema + k;
    int v = 0;
    /* digits only, no sign, no leading zero, at most 4 of them: "/01", "/+1", "/1x" are not versions */
    for (int i = 0; d[i]; i++)
        if (!isdigit((unsigned char)d[i]) || i >= 4 || (i == 0 && d[i] == '0'))
            return 0;
        else
            v = 10 * v + (d[i] - '0');
    return v >= 1 && v <= results_schema_version() ? v : 0;
}

int status_parse(const char *name, int version, attn_status_t *s) {
    for (size_t i = 0; name && i < sizeof statuses / sizeof statuses[0]; i++)
        if (!strcmp(statuses[i].name, name) && statuses[i].since <= version) {
            *s = statuses[i].s;
            return 1;
        }
    return 0;
}

const char *status_name(attn_status_t s) {
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (statuses[i].s == s)
            return statuses[i].name;
    return "error";
}

int results_run_id_valid(const char *id) {
    static const char shape[] = "dddddddd" "T" "dddddd" "Z-" "xxxxxx"; /* d digit, x lower-case hex */
    if (!id || strlen(id) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; shape[i]; i++) {
        int c = (unsigned char)id[i];
        int ok = shape[i] == 'd' ? isdigit(c) : shape[i] == 'x' ? isdigit(c) || (c >= 'a' && c <= 'f') : c == shape[i];
        if (!ok)
            return 0;
    }
    return 1;
}
