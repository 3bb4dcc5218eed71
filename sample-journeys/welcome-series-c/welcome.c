/* Welcome series in C: the same journey as sample-journeys/welcome-series,
 * as a protothread. Its history (heap strings) and tally live in globals,
 * which the host snapshots at every wait. */
#include "cairn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cairn_journey_meta(cairn_meta *m) {
    m->id = "welcome-series";
    m->name = "Welcome series";
    m->trigger = "signed_up";
    m->exit_on[0] = "unsubscribed";
    m->entry_limit = CAIRN_ONCE;
    m->execution_timeout = CAIRN_DAYS(10);
    m->templates[0] = "welcome";
    m->templates[1] = "tips";
    m->templates[2] = "thank-you";
    m->templates[3] = "reminder";
}

static char name[256];
static char **history;
static size_t history_len;
static struct { char what[32]; unsigned count; } tally[8];
static size_t tally_len;

static void note(const char *what) {
    char entry[96];
    snprintf(entry, sizeof entry, "%s@%llu", what, (unsigned long long)cairn_now());
    history = realloc(history, (history_len + 1) * sizeof *history);
    history[history_len++] = strdup(entry);
    size_t i = 0;
    while (i < tally_len && strcmp(tally[i].what, what) != 0) i++;
    if (i == tally_len && tally_len < 8) snprintf(tally[tally_len++].what, sizeof tally[0].what, "%s", what);
    if (i < tally_len) tally[i].count++;
    cairn_checkpoint(what);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const char *)a), ((const char *)b));
}

/* {"name":...,"history":[...],"tally":{...}} plus `extra` fields. */
static char *summary(const char *extra) {
    size_t size = 512 + strlen(extra);
    for (size_t i = 0; i < history_len; i++) size += strlen(history[i]) * 2 + 4;
    char *out = malloc(size);
    char quoted[600];
    cairn_json_quote(quoted, sizeof quoted, name);
    size_t n = (size_t)snprintf(out, size, "{\"name\":%s,%s\"history\":[", quoted, extra);
    for (size_t i = 0; i < history_len; i++) {
        cairn_json_quote(quoted, sizeof quoted, history[i]);
        n += (size_t)snprintf(out + n, size - n, "%s%s", i ? "," : "", quoted);
    }
    qsort(tally, tally_len, sizeof tally[0], by_name);
    n += (size_t)snprintf(out + n, size - n, "],\"tally\":{");
    for (size_t i = 0; i < tally_len; i++)
        n += (size_t)snprintf(out + n, size - n, "%s\"%s\":%u", i ? "," : "", tally[i].what, tally[i].count);
    snprintf(out + n, size - n, "}}");
    return out;
}

static char props[1024];

cairn_step cairn_journey_run(void) {
    CAIRN_BEGIN();
    if (!cairn_json_get_string(cairn_input(), "name", name, sizeof name)) strcpy(name, "there");
    {
        char quoted[600];
        cairn_json_quote(quoted, sizeof quoted, name);
        snprintf(props, sizeof props, "{\"name\":%s,\"variant\":\"%s\"}", quoted,
                 cairn_random_u64() % 2 == 0 ? "a" : "b");
        if (!cairn_send("welcome", props, "onboarding")) return cairn_fail(cairn_last_error()->message);
    }
    note("welcomed");

    CAIRN_AWAIT(cairn_sleep(CAIRN_DAYS(1)));
    {
        char quoted[600];
        cairn_json_quote(quoted, sizeof quoted, name);
        snprintf(props, sizeof props, "{\"name\":%s,\"day\":1}", quoted);
        if (!cairn_send("tips", props, "onboarding")) return cairn_fail(cairn_last_error()->message);
    }
    note("tips-sent");

    CAIRN_AWAIT(cairn_wait_for_event("purchased", CAIRN_DAYS(3), NULL, 0));
    if (cairn_woke_by_event()) {
        note("converted");
        char item[128], quoted[300], extra[320];
        if (cairn_json_get_string(cairn_event_properties(), "item", item, sizeof item)) {
            cairn_json_quote(quoted, sizeof quoted, item);
        } else {
            strcpy(quoted, "null");
        }
        snprintf(extra, sizeof extra, "\"item\":%s,", quoted);
        char *body = summary(extra);
        bool sent = cairn_send("thank-you", body, "transactional");
        free(body);
        if (!sent) return cairn_fail(cairn_last_error()->message);
    } else {
        note("reminded");
        char *body = summary("");
        bool sent = cairn_send("reminder", body, "onboarding");
        free(body);
        if (!sent) return cairn_fail(cairn_last_error()->message);
    }
    CAIRN_END();
}
