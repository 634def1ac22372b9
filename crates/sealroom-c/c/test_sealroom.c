/* The C API as a C program uses it: every RFC 9605 vector seals and opens bit-exactly, a
 * frame sealed by the Rust crate opens, tampered frames are refused without leaving
 * plaintext behind, and bad arguments come back as status codes. Run under valgrind by
 * scripts/test.d/40-c; prints "sealroom-c: N passed, M failed" and exits non-zero on any
 * failure. */

#include <stdio.h>
#include <string.h>

#include "sealroom.h"
#include "vectors.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (cond) {                                                              \
            passed++;                                                            \
        } else {                                                                 \
            failed++;                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_STATUS(call, want)                                                 \
    do {                                                                         \
        SealroomStatus got_ = (call);                                            \
        if (got_ == (want)) {                                                    \
            passed++;                                                            \
        } else {                                                                 \
            failed++;                                                            \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d\n", __FILE__, \
                    __LINE__, #call, (int)got_, sealroom_status_message(got_),   \
                    (int)(want));                                                \
        }                                                                        \
    } while (0)

static int contains(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t len) {
    if (len == 0 || len > hay_len) {
        return 0;
    }
    for (size_t i = 0; i + len <= hay_len; i++) {
        if (memcmp(hay + i, needle, len) == 0) {
            return 1;
        }
    }
    return 0;
}

static void rfc_vectors(void) {
    size_t count = sizeof(RFC_VECTORS) / sizeof(RFC_VECTORS[0]);
    CHECK(count == 5);
    for (size_t i = 0; i < count; i++) {
        const struct rfc_vector *v = &RFC_VECTORS[i];
        SealroomKeyContext *ctx = NULL;
        CHECK_STATUS(sealroom_key_context_new(v->suite, v->kid, v->base_key, v->base_key_len, &ctx),
                     SEALROOM_STATUS_OK);
        if (ctx == NULL) {
            continue;
        }

        size_t sealed_len = 0;
        CHECK_STATUS(sealroom_key_context_sealed_len(ctx, v->ctr, v->pt_len, &sealed_len),
                     SEALROOM_STATUS_OK);
        CHECK(sealed_len == v->ct_len);

        /* Seal to a buffer: bit-exact with the RFC's ciphertext. */
        uint8_t out[128];
        size_t out_len = 0;
        CHECK_STATUS(sealroom_key_context_seal(ctx, v->ctr, v->metadata, v->metadata_len, v->pt,
                                               v->pt_len, out, sizeof out, &out_len),
                     SEALROOM_STATUS_OK);
        CHECK(out_len == v->ct_len && memcmp(out, v->ct, v->ct_len) == 0);

        /* One byte short: refused, nothing claimed written. */
        CHECK_STATUS(sealroom_key_context_seal(ctx, v->ctr, v->metadata, v->metadata_len, v->pt,
                                               v->pt_len, out, v->ct_len - 1, &out_len),
                     SEALROOM_STATUS_BUFFER_TOO_SMALL);

        /* Open to a buffer. */
        uint8_t plain[128];
        SealroomOpened opened;
        memset(&opened, 0, sizeof opened);
        CHECK_STATUS(sealroom_key_context_open(ctx, v->metadata, v->metadata_len, v->ct, v->ct_len,
                                               plain, sizeof plain, &opened),
                     SEALROOM_STATUS_OK);
        CHECK(opened.kid == v->kid && opened.ctr == v->ctr);
        CHECK(opened.plaintext_at == 0 && opened.plaintext_len == v->pt_len);
        CHECK(memcmp(plain, v->pt, v->pt_len) == 0);

        /* Open in place. */
        uint8_t frame[128];
        memcpy(frame, v->ct, v->ct_len);
        CHECK_STATUS(sealroom_key_context_open_in_place(ctx, v->metadata, v->metadata_len, frame,
                                                        v->ct_len, &opened),
                     SEALROOM_STATUS_OK);
        CHECK(opened.plaintext_len == v->pt_len &&
              memcmp(frame + opened.plaintext_at, v->pt, v->pt_len) == 0);

        /* Each tampered byte (header, ciphertext, tag) and altered metadata: refused, and
         * the output holds no plaintext. */
        for (size_t at = 0; at < v->ct_len; at++) {
            memcpy(frame, v->ct, v->ct_len);
            frame[at] ^= 0x01;
            memset(plain, 0, sizeof plain);
            SealroomStatus status = sealroom_key_context_open(
                ctx, v->metadata, v->metadata_len, frame, v->ct_len, plain, sizeof plain, &opened);
            CHECK(status == SEALROOM_STATUS_AUTHENTICATION_FAILED ||
                  status == SEALROOM_STATUS_MALFORMED);
            CHECK(!contains(plain, sizeof plain, v->pt, v->pt_len));
        }
        uint8_t metadata[64];
        memcpy(metadata, v->metadata, v->metadata_len);
        metadata[0] ^= 0x80;
        memcpy(frame, v->ct, v->ct_len);
        CHECK_STATUS(sealroom_key_context_open_in_place(ctx, metadata, v->metadata_len, frame,
                                                        v->ct_len, &opened),
                     SEALROOM_STATUS_AUTHENTICATION_FAILED);
        CHECK(!contains(frame, v->ct_len, v->pt, v->pt_len));

        sealroom_key_context_free(ctx);
    }
}

static void rust_sealed_frame(void) {
    SealroomKeySchedule *schedule = NULL;
    CHECK_STATUS(sealroom_key_schedule_new(ROOM_SECRET, sizeof ROOM_SECRET, ROOM_SUITE, &schedule),
                 SEALROOM_STATUS_OK);
    SealroomOpener *opener = NULL;
    CHECK_STATUS(sealroom_opener_new(schedule, ROOM_EPOCH, NULL, &opener), SEALROOM_STATUS_OK);

    /* A tampered copy first (a refused frame leaves the replay window alone). */
    uint8_t frame[sizeof ROOM_SFRAME];
    uint8_t plain[sizeof ROOM_SFRAME];
    SealroomOpened opened;
    memcpy(frame, ROOM_SFRAME, sizeof frame);
    frame[sizeof frame - 1] ^= 0x40;
    CHECK_STATUS(sealroom_opener_open(opener, ROOM_METADATA, sizeof ROOM_METADATA, frame,
                                      sizeof frame, plain, sizeof plain, &opened),
                 SEALROOM_STATUS_AUTHENTICATION_FAILED);

    /* The frame as the Rust crate sealed it. */
    memset(plain, 0, sizeof plain);
    CHECK_STATUS(sealroom_opener_open(opener, ROOM_METADATA, sizeof ROOM_METADATA, ROOM_SFRAME,
                                      sizeof ROOM_SFRAME, plain, sizeof plain, &opened),
                 SEALROOM_STATUS_OK);
    CHECK(opened.kid == ROOM_KID && opened.epoch == ROOM_EPOCH && opened.ctr == 0);
    CHECK(opened.plaintext_len == sizeof ROOM_PLAINTEXT &&
          memcmp(plain, ROOM_PLAINTEXT, sizeof ROOM_PLAINTEXT) == 0);

    /* The same bytes again are a replay. */
    CHECK_STATUS(sealroom_opener_open(opener, ROOM_METADATA, sizeof ROOM_METADATA, ROOM_SFRAME,
                                      sizeof ROOM_SFRAME, plain, sizeof plain, &opened),
                 SEALROOM_STATUS_REPLAYED);

    /* The schedule's key context for that KID opens it too (no replay window there). */
    SealroomKeyContext *ctx = NULL;
    CHECK_STATUS(sealroom_key_schedule_key_context(schedule, ROOM_EPOCH, ROOM_KID, &ctx),
                 SEALROOM_STATUS_OK);
    memcpy(frame, ROOM_SFRAME, sizeof frame);
    CHECK_STATUS(sealroom_key_context_open_in_place(ctx, ROOM_METADATA, sizeof ROOM_METADATA,
                                                    frame, sizeof frame, &opened),
                 SEALROOM_STATUS_OK);
    CHECK(memcmp(frame + opened.plaintext_at, ROOM_PLAINTEXT, sizeof ROOM_PLAINTEXT) == 0);
    sealroom_key_context_free(ctx);

    /* Another room secret cannot open it. */
    uint8_t other_secret[SEALROOM_ROOM_SECRET_LEN];
    memcpy(other_secret, ROOM_SECRET, sizeof other_secret);
    other_secret[0] ^= 1;
    SealroomKeySchedule *other = NULL;
    SealroomOpener *stranger = NULL;
    CHECK_STATUS(sealroom_key_schedule_new(other_secret, sizeof other_secret, ROOM_SUITE, &other),
                 SEALROOM_STATUS_OK);
    CHECK_STATUS(sealroom_opener_new(other, ROOM_EPOCH, NULL, &stranger), SEALROOM_STATUS_OK);
    CHECK_STATUS(sealroom_opener_open(stranger, ROOM_METADATA, sizeof ROOM_METADATA, ROOM_SFRAME,
                                      sizeof ROOM_SFRAME, plain, sizeof plain, &opened),
                 SEALROOM_STATUS_AUTHENTICATION_FAILED);
    sealroom_opener_free(stranger);
    sealroom_key_schedule_free(other);

    sealroom_opener_free(opener);
    sealroom_key_schedule_free(schedule);
}

static void round_trips(void) {
    const uint8_t secret[SEALROOM_ROOM_SECRET_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const uint8_t metadata[] = "track 1, frame 7";
    uint8_t payload[1200];
    for (size_t i = 0; i < sizeof payload; i++) {
        payload[i] = (uint8_t)(i * 7);
    }

    for (uint16_t suite = 1; suite <= 5; suite++) {
        SealroomKeySchedule *schedule = NULL;
        CHECK_STATUS(sealroom_key_schedule_new(secret, sizeof secret, suite, &schedule),
                     SEALROOM_STATUS_OK);
        SealroomSealer *sealer = NULL;
        SealroomOpener *opener = NULL;
        SealroomOpenerConfig config = {.max_senders = 4, .grace_ms = 0};
        CHECK_STATUS(sealroom_sealer_new(schedule, 0, &sealer), SEALROOM_STATUS_OK);
        CHECK_STATUS(sealroom_opener_new(schedule, 0, &config, &opener), SEALROOM_STATUS_OK);
        sealroom_key_schedule_free(schedule); /* sealers and openers outlive it */

        uint64_t kid = 0;
        CHECK_STATUS(sealroom_sealer_kid(sealer, &kid), SEALROOM_STATUS_OK);

        /* To a second buffer. A too-small buffer uses no counter: the next frame is CTR 0. */
        size_t need = 0;
        uint8_t sframe[1200 + SEALROOM_MAX_HEADER_LEN + SEALROOM_MAX_TAG_LEN];
        size_t sframe_len = 0;
        CHECK_STATUS(sealroom_sealer_sealed_len(sealer, sizeof payload, &need), SEALROOM_STATUS_OK);
        CHECK(need <= sizeof sframe);
        CHECK_STATUS(sealroom_sealer_seal(sealer, metadata, sizeof metadata, payload,
                                          sizeof payload, sframe, need - 1, &sframe_len),
                     SEALROOM_STATUS_BUFFER_TOO_SMALL);
        CHECK_STATUS(sealroom_sealer_seal(sealer, metadata, sizeof metadata, payload,
                                          sizeof payload, sframe, sizeof sframe, &sframe_len),
                     SEALROOM_STATUS_OK);
        CHECK(sframe_len == need);
        uint8_t plain[sizeof sframe];
        SealroomOpened opened;
        CHECK_STATUS(sealroom_opener_open(opener, metadata, sizeof metadata, sframe, sframe_len,
                                          plain, sizeof plain, &opened),
                     SEALROOM_STATUS_OK);
        CHECK(opened.kid == kid && opened.ctr == 0 && opened.plaintext_len == sizeof payload);
        CHECK(memcmp(plain, payload, sizeof payload) == 0);

        /* In place: plaintext after SEALROOM_MAX_HEADER_LEN bytes of headroom. */
        uint8_t buf[SEALROOM_MAX_HEADER_LEN + 1200 + SEALROOM_MAX_TAG_LEN];
        memcpy(buf + SEALROOM_MAX_HEADER_LEN, payload, sizeof payload);
        size_t at = 0, len = 0;
        CHECK_STATUS(sealroom_sealer_seal_in_place(sealer, metadata, sizeof metadata, buf,
                                                   sizeof buf, SEALROOM_MAX_HEADER_LEN,
                                                   sizeof payload, &at, &len),
                     SEALROOM_STATUS_OK);
        CHECK(at + len <= sizeof buf && !contains(buf + at, len, payload, 64));
        CHECK_STATUS(sealroom_opener_open_in_place(opener, metadata, sizeof metadata, buf + at, len,
                                                   &opened),
                     SEALROOM_STATUS_OK);
        CHECK(opened.ctr == 1 && opened.plaintext_len == sizeof payload);
        CHECK(memcmp(buf + at + opened.plaintext_at, payload, sizeof payload) == 0);

        /* No headroom, no tailroom. */
        CHECK_STATUS(sealroom_sealer_seal_in_place(sealer, metadata, sizeof metadata, buf,
                                                   sizeof buf, 0, sizeof payload, &at, &len),
                     SEALROOM_STATUS_NO_HEADROOM);
        CHECK_STATUS(sealroom_sealer_seal_in_place(sealer, metadata, sizeof metadata, buf,
                                                   SEALROOM_MAX_HEADER_LEN + sizeof payload,
                                                   SEALROOM_MAX_HEADER_LEN, sizeof payload, &at,
                                                   &len),
                     SEALROOM_STATUS_BUFFER_TOO_SMALL);

        /* A rekeyed sealer's frames still open (a new KID the opener derives on sight). */
        CHECK_STATUS(sealroom_sealer_rekey(sealer), SEALROOM_STATUS_OK);
        uint64_t new_kid = 0;
        CHECK_STATUS(sealroom_sealer_kid(sealer, &new_kid), SEALROOM_STATUS_OK);
        CHECK(new_kid != kid);
        CHECK_STATUS(sealroom_sealer_seal(sealer, NULL, 0, payload, 10, sframe, sizeof sframe,
                                          &sframe_len),
                     SEALROOM_STATUS_OK);
        CHECK_STATUS(sealroom_opener_open(opener, NULL, 0, sframe, sframe_len, plain, sizeof plain,
                                          &opened),
                     SEALROOM_STATUS_OK);
        CHECK(opened.kid == new_kid && opened.ctr == 0);

        sealroom_sealer_free(sealer);
        sealroom_opener_free(opener);
    }
}

static void bad_arguments(void) {
    const uint8_t secret[SEALROOM_ROOM_SECRET_LEN] = {0};
    SealroomKeySchedule *schedule = NULL;
    CHECK_STATUS(sealroom_key_schedule_new(secret, 16, 4, &schedule),
                 SEALROOM_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(sealroom_key_schedule_new(secret, sizeof secret, 9, &schedule),
                 SEALROOM_STATUS_UNKNOWN_SUITE);
    CHECK_STATUS(sealroom_key_schedule_new(NULL, sizeof secret, 4, &schedule),
                 SEALROOM_STATUS_NULL_POINTER);
    CHECK_STATUS(sealroom_key_schedule_new(secret, sizeof secret, 4, NULL),
                 SEALROOM_STATUS_NULL_POINTER);
    CHECK(schedule == NULL);
    CHECK_STATUS(sealroom_key_schedule_new(secret, sizeof secret, 4, &schedule),
                 SEALROOM_STATUS_OK);

    SealroomSealer *sealer = NULL;
    CHECK_STATUS(sealroom_sealer_new(NULL, 0, &sealer), SEALROOM_STATUS_NULL_POINTER);
    CHECK_STATUS(sealroom_sealer_new(schedule, 0, &sealer), SEALROOM_STATUS_OK);
    uint8_t buf[256];
    size_t len = 0;
    /* Output overlapping the input is refused rather than aliased. */
    CHECK_STATUS(sealroom_sealer_seal(sealer, NULL, 0, buf, 100, buf + 50, 150, &len),
                 SEALROOM_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(sealroom_sealer_seal(sealer, NULL, 0, NULL, 10, buf, sizeof buf, &len),
                 SEALROOM_STATUS_NULL_POINTER);
    CHECK_STATUS(sealroom_sealer_seal(sealer, NULL, 0, buf, 10, buf + 100, 100, NULL),
                 SEALROOM_STATUS_NULL_POINTER);

    /* Garbage and short frames are malformed, not crashes. */
    SealroomOpener *opener = NULL;
    SealroomOpened opened;
    CHECK_STATUS(sealroom_opener_new(schedule, 0, NULL, &opener), SEALROOM_STATUS_OK);
    uint8_t garbage[3] = {0xff, 0xff, 0xff};
    CHECK_STATUS(sealroom_opener_open_in_place(opener, NULL, 0, garbage, sizeof garbage, &opened),
                 SEALROOM_STATUS_MALFORMED);
    CHECK_STATUS(sealroom_opener_open_in_place(opener, NULL, 0, NULL, 0, &opened),
                 SEALROOM_STATUS_MALFORMED);
    CHECK_STATUS(sealroom_opener_rotate(opener, 1), SEALROOM_STATUS_OK);
    CHECK_STATUS(sealroom_opener_handle_timeout(opener), SEALROOM_STATUS_OK);

    /* Every status has a sentence; unknown codes too. */
    for (int code = 0; code <= 14; code++) {
        const char *message = sealroom_status_message(code);
        CHECK(message != NULL && strlen(message) > 1);
    }
    CHECK(strstr(sealroom_status_message(999), "unknown") != NULL);

    sealroom_opener_free(opener);
    sealroom_sealer_free(sealer);
    sealroom_key_schedule_free(schedule);
    sealroom_sealer_free(NULL);
    sealroom_opener_free(NULL);
    sealroom_key_schedule_free(NULL);
    sealroom_key_context_free(NULL);
}

int main(void) {
    rfc_vectors();
    rust_sealed_frame();
    round_trips();
    bad_arguments();
    printf("sealroom-c: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
