/* cairn.c: the C SDK's side of the component: the exports, the durable
 * imports in C terms, and the JSON helpers. Built with every C journey. */
#include "cairn.h"
#include "journey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cairn__line;

static char *input_json;
static char *user_id;
static uint64_t started_at;
static uint32_t wait_id;
static uint8_t wake_tag;
static char *event_name;
static char *event_properties;
static uint64_t event_timestamp;
static cairn_error last_error;
static char *fail_reason;

static char *dup_string(const journey_string_t *s) {
    char *copy = malloc(s->len + 1);
    memcpy(copy, s->ptr, s->len);
    copy[s->len] = 0;
    return copy;
}

static journey_string_t borrow(const char *s) {
    journey_string_t out;
    journey_string_set(&out, s ? s : "");
    return out;
}

static void set_error(cairn_error_kind kind, const char *message) {
    last_error.kind = kind;
    snprintf(last_error.message, sizeof last_error.message, "%s", message);
}

static void wait_error(const cairn_journey_types_wait_error_t *err) {
    char text[256];
    switch (err->tag) {
    case CAIRN_JOURNEY_TYPES_WAIT_ERROR_EXCEEDS_CEILING:
        last_error.limit = err->val.exceeds_ceiling.limit;
        last_error.requested = err->val.exceeds_ceiling.requested;
        snprintf(text, sizeof text, "wait refused (exceeds-ceiling): the wait would end at %llu, after the run's execution ceiling %llu",
                 (unsigned long long)last_error.requested, (unsigned long long)last_error.limit);
        set_error(CAIRN_ERR_EXCEEDS_CEILING, text);
        break;
    case CAIRN_JOURNEY_TYPES_WAIT_ERROR_ALREADY_WAITING:
        snprintf(text, sizeof text, "wait refused (already-waiting): wait %u is registered", err->val.already_waiting);
        set_error(CAIRN_ERR_ALREADY_WAITING, text);
        break;
    default: {
        char *why = dup_string(&err->val.invalid);
        snprintf(text, sizeof text, "wait refused (invalid): %s", why);
        free(why);
        set_error(CAIRN_ERR_INVALID, text);
    }
    }
}

static bool registered(bool ok, uint32_t id, cairn_journey_types_wait_error_t *err) {
    if (!ok) {
        wait_error(err);
        cairn_journey_types_wait_error_free(err);
        return false;
    }
    last_error.kind = CAIRN_OK;
    wait_id = id;
    return true;
}

bool cairn_sleep(uint64_t duration) {
    uint32_t id = 0;
    cairn_journey_types_wait_error_t err;
    bool ok = cairn_journey_durable_sleep(duration, &id, &err);
    return registered(ok, id, &err);
}

bool cairn_sleep_until(uint64_t at) {
    uint32_t id = 0;
    cairn_journey_types_wait_error_t err;
    bool ok = cairn_journey_durable_sleep_until(at, &id, &err);
    return registered(ok, id, &err);
}

bool cairn_wait_for_event(const char *name, uint64_t timeout, const cairn_condition *filter, size_t filter_len) {
    cairn_journey_types_condition_t conditions[CAIRN_MAX_CONDITIONS];
    if (filter_len > CAIRN_MAX_CONDITIONS) filter_len = CAIRN_MAX_CONDITIONS;
    for (size_t i = 0; i < filter_len; i++) {
        conditions[i].property = borrow(filter[i].property);
        conditions[i].op = (uint8_t)filter[i].op;
        conditions[i].value = borrow(filter[i].value ? filter[i].value : "null");
    }
    cairn_journey_durable_list_condition_t list = {conditions, filter_len};
    journey_string_t event = borrow(name);
    uint32_t id = 0;
    cairn_journey_types_wait_error_t err;
    bool ok = cairn_journey_durable_wait_for_event(&event, timeout, &list, &id, &err);
    return registered(ok, id, &err);
}

bool cairn_woke_by_event(void) { return wake_tag == CAIRN_JOURNEY_TYPES_WAKE_EVENT; }
bool cairn_timed_out(void) { return wake_tag == CAIRN_JOURNEY_TYPES_WAKE_TIMED_OUT; }
const char *cairn_event_name(void) { return event_name ? event_name : ""; }
const char *cairn_event_properties(void) { return event_properties ? event_properties : "{}"; }
uint64_t cairn_event_timestamp(void) { return event_timestamp; }
const char *cairn_user_id(void) { return user_id ? user_id : ""; }
const char *cairn_input(void) { return input_json ? input_json : "{}"; }
uint64_t cairn_started_at(void) { return started_at; }
const cairn_error *cairn_last_error(void) { return &last_error; }

bool cairn_next_local_time(uint8_t hour, uint8_t minute, unsigned weekdays, const char *timezone, uint64_t *at) {
    cairn_journey_types_weekday_t days[7];
    size_t n = 0;
    for (unsigned d = 0; d < 7; d++)
        if (weekdays & (1u << d)) days[n++] = (cairn_journey_types_weekday_t)d;
    cairn_journey_types_local_time_t local;
    local.hour = hour;
    local.minute = minute;
    local.weekdays.ptr = days;
    local.weekdays.len = n;
    local.timezone.is_some = timezone != NULL;
    if (timezone) local.timezone.val = borrow(timezone);
    journey_string_t err;
    if (cairn_journey_durable_next_local_time(&local, at, &err)) {
        last_error.kind = CAIRN_OK;
        return true;
    }
    char *why = dup_string(&err);
    journey_string_free(&err);
    char text[256];
    snprintf(text, sizeof text, "invalid local time: %s", why);
    free(why);
    set_error(CAIRN_ERR_INVALID, text);
    return false;
}

bool cairn_send_to(const char *to, const char *template_name, const char *props_json, const char *category, const char *label) {
    cairn_journey_types_message_t message;
    message.channel = CAIRN_JOURNEY_TYPES_CHANNEL_EMAIL;
    message.to = borrow(to);
    message.template_ = borrow(template_name);
    message.props = borrow(props_json ? props_json : "{}");
    message.category.is_some = category != NULL;
    if (category) message.category.val = borrow(category);
    message.label.is_some = label != NULL;
    if (label) message.label.val = borrow(label);
    cairn_journey_types_send_receipt_t receipt;
    cairn_journey_types_send_error_t err;
    if (cairn_journey_durable_send(&message, &receipt, &err)) {
        cairn_journey_types_send_receipt_free(&receipt);
        last_error.kind = CAIRN_OK;
        return true;
    }
    char text[256];
    if (err.tag == CAIRN_JOURNEY_TYPES_SEND_ERROR_TOO_LARGE) {
        snprintf(text, sizeof text, "message too large: the limit is %u bytes", err.val.too_large);
        set_error(CAIRN_ERR_TOO_LARGE, text);
    } else {
        char *why = dup_string(&err.val.invalid);
        snprintf(text, sizeof text, "invalid message: %s", why);
        free(why);
        set_error(CAIRN_ERR_INVALID, text);
    }
    cairn_journey_types_send_error_free(&err);
    return false;
}

bool cairn_send(const char *template_name, const char *props_json, const char *category) {
    return cairn_send_to("", template_name, props_json, category, NULL);
}

void cairn_checkpoint(const char *label) {
    journey_string_t s = borrow(label);
    cairn_journey_durable_checkpoint(&s);
}

void cairn_log(const char *message) {
    journey_string_t s = borrow(message);
    cairn_journey_durable_log(CAIRN_JOURNEY_TYPES_LOG_LEVEL_INFO, &s);
}

uint64_t cairn_now(void) { return cairn_journey_durable_now(); }
uint64_t cairn_random_u64(void) { return cairn_journey_durable_random_u64(); }

cairn_step cairn__waiting(void) { return (cairn_step){0, 0}; }

cairn_step cairn_fail(const char *reason) {
    free(fail_reason);
    fail_reason = strdup(reason ? reason : "failed");
    cairn__line = -1;
    return (cairn_step){2, fail_reason};
}

cairn_step cairn__fail_last_error(void) { return cairn_fail(last_error.message); }

bool cairn_json_quote(char *out, size_t size, const char *text) {
    size_t n = 0;
    if (size < 3) return false;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char esc[8];
        size_t len;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\'; esc[1] = (char)*p; len = 2;
        } else if (*p < 0x20) {
            len = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *p);
        } else {
            esc[0] = (char)*p; len = 1;
        }
        if (n + len + 2 > size) return false;
        memcpy(out + n, esc, len);
        n += len;
    }
    out[n++] = '"';
    out[n] = 0;
    return true;
}

bool cairn_json_get_string(const char *json, const char *key, char *out, size_t size) {
    size_t key_len = strlen(key);
    for (const char *p = json; (p = strchr(p, '"')) != NULL; p++) {
        if (strncmp(p + 1, key, key_len) != 0 || p[1 + key_len] != '"') continue;
        const char *v = p + 2 + key_len;
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
        if (*v != ':') continue;
        v++;
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
        size_t n = 0;
        if (*v == '"') {
            for (v++; *v && *v != '"'; v++) {
                if (*v == '\\' && v[1]) v++;
                if (n + 1 >= size) return false;
                out[n++] = *v;
            }
        } else {
            for (; *v && *v != ',' && *v != '}' && *v != ' '; v++) {
                if (n + 1 >= size) return false;
                out[n++] = *v;
            }
        }
        out[n] = 0;
        return n > 0 || *v == '"';
    }
    return false;
}

static void to_step(cairn_step step, journey_step_t *ret) {
    if (step.kind == 0) {
        ret->tag = CAIRN_JOURNEY_TYPES_STEP_WAITING;
        ret->val.waiting = wait_id;
    } else if (step.kind == 1) {
        ret->tag = CAIRN_JOURNEY_TYPES_STEP_DONE;
    } else {
        ret->tag = CAIRN_JOURNEY_TYPES_STEP_FAILED;
        journey_string_dup(&ret->val.failed, step.reason ? step.reason : "failed");
    }
}

static cairn_step run_step(void) {
    if (cairn__line < 0) return cairn_fail("the journey already ended");
    return cairn_journey_run();
}

static void rule(cairn_journey_types_event_rule_t *out, const char *event, const cairn_condition *when) {
    size_t n = 0;
    while (when && n < CAIRN_MAX_CONDITIONS && when[n].property) n++;
    journey_string_dup(&out->event, event);
    out->conditions.len = n;
    out->conditions.ptr = n ? calloc(n, sizeof(cairn_journey_types_condition_t)) : NULL;
    for (size_t i = 0; i < n; i++) {
        journey_string_dup(&out->conditions.ptr[i].property, when[i].property);
        out->conditions.ptr[i].op = (uint8_t)when[i].op;
        journey_string_dup(&out->conditions.ptr[i].value, when[i].value ? when[i].value : "null");
    }
}

void exports_journey_meta(journey_journey_meta_t *ret) {
    cairn_meta m;
    memset(&m, 0, sizeof m);
    cairn_journey_meta(&m);
    journey_string_dup(&ret->id, m.id ? m.id : "");
    journey_string_dup(&ret->name, m.name ? m.name : (m.id ? m.id : ""));
    ret->trigger.is_some = m.trigger != NULL;
    if (m.trigger) rule(&ret->trigger.val, m.trigger, m.trigger_when);
    size_t exits = 0;
    while (exits < CAIRN_MAX_RULES && m.exit_on[exits]) exits++;
    ret->exit_on.len = exits;
    ret->exit_on.ptr = exits ? calloc(exits, sizeof(cairn_journey_types_event_rule_t)) : NULL;
    for (size_t i = 0; i < exits; i++) rule(&ret->exit_on.ptr[i], m.exit_on[i], NULL);
    switch (m.entry_limit) {
    case CAIRN_ONCE: ret->entry_limit.tag = CAIRN_JOURNEY_TYPES_ENTRY_LIMIT_ONCE; break;
    case CAIRN_ONCE_PER_PERIOD:
        ret->entry_limit.tag = CAIRN_JOURNEY_TYPES_ENTRY_LIMIT_ONCE_PER_PERIOD;
        ret->entry_limit.val.once_per_period = m.once_per;
        break;
    default: ret->entry_limit.tag = CAIRN_JOURNEY_TYPES_ENTRY_LIMIT_UNLIMITED;
    }
    ret->execution_timeout.is_some = m.execution_timeout != 0;
    ret->execution_timeout.val = m.execution_timeout;
    size_t templates = 0;
    while (templates < CAIRN_MAX_RULES && m.templates[templates]) templates++;
    ret->templates.len = templates;
    ret->templates.ptr = templates ? calloc(templates, sizeof(journey_string_t)) : NULL;
    for (size_t i = 0; i < templates; i++) journey_string_dup(&ret->templates.ptr[i], m.templates[i]);
}

void exports_journey_start(journey_start_input_t *input, journey_step_t *ret) {
    input_json = dup_string(&input->input);
    user_id = dup_string(&input->user_id);
    started_at = input->started_at;
    journey_start_input_free(input);
    cairn__line = 0;
    to_step(run_step(), ret);
}

void exports_journey_resume(journey_wake_t *wake, journey_step_t *ret) {
    wake_tag = wake->tag;
    free(event_name);
    free(event_properties);
    event_name = event_properties = NULL;
    if (wake->tag == CAIRN_JOURNEY_TYPES_WAKE_EVENT) {
        event_name = dup_string(&wake->val.event.name);
        event_properties = dup_string(&wake->val.event.properties);
        event_timestamp = wake->val.event.timestamp;
    }
    journey_wake_free(wake);
    to_step(run_step(), ret);
}
