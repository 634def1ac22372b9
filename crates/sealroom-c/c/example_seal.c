/* A media pipeline's view of sealroom: one sender seals each frame in place in its own
 * buffer (no copy, no allocation per frame), one receiver opens it in place, with the
 * sealroom envelope's bytes or any agreed metadata authenticated beside it.
 *
 * Build (from the repository root, after `cargo build -p sealroom-c --release`):
 *   cc -std=c11 -I crates/sealroom-c/include crates/sealroom-c/c/example_seal.c \
 *      target/release/libsealroom_c.a -lpthread -ldl -lm -o example_seal
 */

#include <stdio.h>
#include <string.h>

#include "sealroom.h"

#define FRAME_MAX 1500

static int fail(const char *what, SealroomStatus status) {
    fprintf(stderr, "%s: %s\n", what, sealroom_status_message(status));
    return 1;
}

int main(void) {
    /* The application hands every member the same 32 random bytes out of band. */
    uint8_t secret[SEALROOM_ROOM_SECRET_LEN];
    for (size_t i = 0; i < sizeof secret; i++) {
        secret[i] = (uint8_t)(0xa0 + i);
    }
    SealroomKeySchedule *schedule = NULL;
    SealroomStatus status = sealroom_key_schedule_new(
        secret, sizeof secret, SEALROOM_SUITE_AES_128_GCM_SHA256_128, &schedule);
    if (status != SEALROOM_STATUS_OK) {
        return fail("key schedule", status);
    }
    memset(secret, 0, sizeof secret);

    SealroomSealer *sealer = NULL;
    SealroomOpener *opener = NULL;
    if ((status = sealroom_sealer_new(schedule, 0, &sealer)) != SEALROOM_STATUS_OK) {
        return fail("sealer", status);
    }
    if ((status = sealroom_opener_new(schedule, 0, NULL, &opener)) != SEALROOM_STATUS_OK) {
        return fail("opener", status);
    }
    sealroom_key_schedule_free(schedule);

    /* Headroom for the SFrame header before the payload, room for the tag after it. */
    uint8_t buf[SEALROOM_MAX_HEADER_LEN + FRAME_MAX + SEALROOM_MAX_TAG_LEN];
    const uint8_t metadata[] = {'t', 'r', 'a', 'c', 'k', 1};
    int opened_frames = 0;
    for (int frame = 0; frame < 5; frame++) {
        uint8_t *payload = buf + SEALROOM_MAX_HEADER_LEN;
        int len = snprintf((char *)payload, FRAME_MAX, "video frame %d", frame);

        size_t at = 0, sframe_len = 0;
        status = sealroom_sealer_seal_in_place(sealer, metadata, sizeof metadata, buf, sizeof buf,
                                               SEALROOM_MAX_HEADER_LEN, (size_t)len, &at,
                                               &sframe_len);
        if (status == SEALROOM_STATUS_ROTATION_REQUIRED) {
            sealroom_sealer_rekey(sealer);
            continue;
        }
        if (status != SEALROOM_STATUS_OK) {
            return fail("seal", status);
        }
        /* buf[at .. at + sframe_len] is what goes on the wire. */

        SealroomOpened opened;
        status = sealroom_opener_open_in_place(opener, metadata, sizeof metadata, buf + at,
                                               sframe_len, &opened);
        if (status != SEALROOM_STATUS_OK) {
            fprintf(stderr, "dropped a frame: %s\n", sealroom_status_message(status));
            continue;
        }
        printf("opened %.*s (kid %#llx, ctr %llu, %zu bytes sealed)\n", (int)opened.plaintext_len,
               (const char *)(buf + at + opened.plaintext_at), (unsigned long long)opened.kid,
               (unsigned long long)opened.ctr, sframe_len);
        opened_frames++;
    }

    sealroom_sealer_free(sealer);
    sealroom_opener_free(opener);
    return opened_frames == 5 ? 0 : 1;
}
