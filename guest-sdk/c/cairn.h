/*
 * cairn.h: write cairn journeys in C (and Zig, through translate-c).
 *
 * C has no coroutines, so a journey is a protothread: one function that the
 * SDK calls on `start` and again on every `resume`, which jumps back to the
 * wait it left from. Waits are CAIRN_AWAIT(...) statements:
 *
 *     #include "cairn.h"
 *
 *     void cairn_journey_meta(cairn_meta *m) {
 *         m->id = "welcome"; m->name = "Welcome"; m->trigger = "signed_up";
 *     }
 *
 *     static int sent;   // state lives in globals: they are snapshotted
 *
 *     cairn_step cairn_journey_run(void) {
 *         CAIRN_BEGIN();
 *         cairn_send("welcome", "{}", "onboarding");
 *         CAIRN_AWAIT(cairn_sleep(CAIRN_DAYS(1)));
 *         if (cairn_woke_by_event()) { ... }
 *         CAIRN_END();
 *     }
 *
 * The rules of protothreads apply: local variables do not survive a wait
 * (keep state in globals or on the heap: the host snapshots all of linear
 * memory at every wait), and a CAIRN_AWAIT may not sit inside a `switch`.
 * Everything here is plain memory and cairn's imports: no libc I/O (no
 * printf to stdout, no files), so the component stays pure.
 */
#ifndef CAIRN_H
#define CAIRN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAIRN_MILLIS(n) ((uint64_t)(n))
#define CAIRN_SECONDS(n) ((uint64_t)(n) * 1000ull)
#define CAIRN_MINUTES(n) ((uint64_t)(n) * 60000ull)
#define CAIRN_HOURS(n) ((uint64_t)(n) * 3600000ull)
#define CAIRN_DAYS(n) ((uint64_t)(n) * 86400000ull)

/* A condition on an event property: `value` is JSON text ("0", "\"pro\""). */
typedef enum { CAIRN_EQ, CAIRN_NEQ, CAIRN_GT, CAIRN_GTE, CAIRN_LT, CAIRN_LTE, CAIRN_EXISTS, CAIRN_CONTAINS } cairn_op;
typedef struct {
    const char *property;
    cairn_op op;
    const char *value;
} cairn_condition;

#define CAIRN_MAX_RULES 8
#define CAIRN_MAX_CONDITIONS 8

typedef struct {
    const char *event;
    cairn_condition when[CAIRN_MAX_CONDITIONS];
} cairn_rule;

typedef enum { CAIRN_UNLIMITED, CAIRN_ONCE, CAIRN_ONCE_PER_PERIOD } cairn_entry_limit;

/* What cairn_journey_meta fills in. Unset fields keep their zero defaults. */
typedef struct {
    const char *id;
    const char *name;
    const char *trigger;                       /* NULL: no trigger */
    cairn_condition trigger_when[CAIRN_MAX_CONDITIONS];
    const char *exit_on[CAIRN_MAX_RULES];      /* event names */
    cairn_entry_limit entry_limit;
    uint64_t once_per;                         /* with CAIRN_ONCE_PER_PERIOD */
    uint64_t execution_timeout;                /* 0: the host's default */
    const char *templates[CAIRN_MAX_RULES];    /* templates the journey sends; deploy checks them */
} cairn_meta;

/* What a step of the journey returns; use the macros, not these values. */
typedef struct {
    int kind; /* 0 waiting, 1 done, 2 failed */
    const char *reason;
} cairn_step;

/* Why the last call failed. */
typedef enum {
    CAIRN_OK = 0,
    CAIRN_ERR_EXCEEDS_CEILING,
    CAIRN_ERR_ALREADY_WAITING,
    CAIRN_ERR_INVALID,
    CAIRN_ERR_TOO_LARGE,
} cairn_error_kind;

typedef struct {
    cairn_error_kind kind;
    char message[256];
    uint64_t limit;     /* CAIRN_ERR_EXCEEDS_CEILING: the ceiling (unix ms) */
    uint64_t requested; /* CAIRN_ERR_EXCEEDS_CEILING: when the wait would end */
} cairn_error;

/* Implemented by the journey. */
void cairn_journey_meta(cairn_meta *meta);
cairn_step cairn_journey_run(void);

/* The run. */
const char *cairn_user_id(void);
const char *cairn_input(void);          /* the run's input, JSON text */
uint64_t cairn_started_at(void);

/* Waits: register, then CAIRN_AWAIT. false = refused (see cairn_last_error). */
bool cairn_sleep(uint64_t duration);
bool cairn_sleep_until(uint64_t at);
bool cairn_wait_for_event(const char *name, uint64_t timeout, const cairn_condition *filter, size_t filter_len);

/* How the last wait ended. */
bool cairn_woke_by_event(void);
bool cairn_timed_out(void);
const char *cairn_event_name(void);
const char *cairn_event_properties(void); /* JSON text */
uint64_t cairn_event_timestamp(void);

/* Effects. cairn_send returns false if refused (see cairn_last_error). */
bool cairn_send(const char *template_name, const char *props_json, const char *category);
bool cairn_send_to(const char *to, const char *template_name, const char *props_json, const char *category, const char *label);
void cairn_checkpoint(const char *label);
void cairn_log(const char *message);
uint64_t cairn_now(void);

/* Local time: the first instant after now when the clock in the user's time
 * zone (or `timezone`, an IANA name; NULL for the user's) reads hour:minute,
 * on a day in `weekdays` (a mask of CAIRN_MONDAY.. CAIRN_SUNDAY; 0 any day).
 * Returns false if refused (see cairn_last_error); pass *at to cairn_sleep_until. */
enum {
    CAIRN_MONDAY = 1, CAIRN_TUESDAY = 2, CAIRN_WEDNESDAY = 4, CAIRN_THURSDAY = 8,
    CAIRN_FRIDAY = 16, CAIRN_SATURDAY = 32, CAIRN_SUNDAY = 64,
};
bool cairn_next_local_time(uint8_t hour, uint8_t minute, unsigned weekdays, const char *timezone, uint64_t *at);
uint64_t cairn_random_u64(void);

const cairn_error *cairn_last_error(void);

/* JSON helpers: escape a string into a JSON string literal (with quotes);
 * read a top-level string or number field of a flat JSON object. Each
 * returns false if it did not fit or was not found. */
bool cairn_json_quote(char *out, size_t size, const char *text);
bool cairn_json_get_string(const char *json, const char *key, char *out, size_t size);

/* Protothread machinery. */
extern int cairn__line;
cairn_step cairn__waiting(void);
cairn_step cairn__fail_last_error(void);

#define CAIRN_BEGIN() switch (cairn__line) { case 0:
#define CAIRN_END()                                                                                \
    }                                                                                              \
    cairn__line = -1;                                                                              \
    return (cairn_step){1, 0}
/* Fails the run with `reason` (copied). */
cairn_step cairn_fail(const char *reason);
/* Waits for the wait `registration` registered; fails the run if it was refused. */
#define CAIRN_AWAIT(registration)                                                                  \
    do {                                                                                           \
        if (!(registration)) return cairn__fail_last_error();                                      \
        cairn__line = __LINE__;                                                                    \
        return cairn__waiting();                                                                   \
        case __LINE__:;                                                                            \
    } while (0)
/* Like CAIRN_AWAIT, but a refused wait goes on at once: check cairn_last_error(). */
#define CAIRN_TRY_AWAIT(registration)                                                              \
    do {                                                                                           \
        if (registration) {                                                                        \
            cairn__line = __LINE__;                                                                \
            return cairn__waiting();                                                               \
            case __LINE__:;                                                                        \
        }                                                                                          \
    } while (0)

#endif
