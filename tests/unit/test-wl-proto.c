/* Unit tests for the write-log protocol's pure checks
 * (primary/writelog/wl_proto.c): control-message reassembly, the bounds
 * on the client's ring indices and requests, reply checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "primary/writelog/wl_proto.h"

static void test_reader_split_messages(void **state)
{
    struct wl_ctl_reader rd = { .len = 0 };
    uint8_t stream[2 * WL_CTLMSG_LEN + 3];
    struct wl_ctlmsg m;
    bool complete;
    size_t used = 0, got = 0;

    (void)state;
    memset(stream, 0, sizeof(stream));
    memcpy(stream, "kick", 4);
    memcpy(stream + WL_CTLMSG_LEN, "seal", 4);
    /* Seven bytes at a time: messages straddle the pieces. */
    while (used < sizeof(stream)) {
        size_t piece = sizeof(stream) - used < 7 ? sizeof(stream) - used : 7, off = 0;
        while (off < piece) {
            off += wl_ctl_reader_feed(&rd, stream + used + off, piece - off, &m, &complete);
            if (complete) {
                assert_int_equal(wl_cmd_parse(&m), got == 0 ? WL_CMD_ID_KICK : WL_CMD_ID_SEAL);
                got++;
            }
        }
        used += piece;
    }
    assert_int_equal(got, 2);
    assert_int_equal(rd.len, 3);
}

static void test_cmd_printable(void **state)
{
    char out[WL_CMD_PRINTABLE_LEN];

    (void)state;
    wl_cmd_printable("a\xff\n~", out);
    assert_string_equal(out, "a\\xff\\x0a~");
    wl_cmd_printable("\x01\x02\x03\x04", out);
    assert_string_equal(out, "\\x01\\x02\\x03\\x04");
}

static void test_cmd_parse_version_2(void **state)
{
    struct wl_ctlmsg m = { .cmd = "cowc" };

    (void)state;
    assert_int_equal(wl_cmd_parse(&m), WL_CMD_ID_COWC);
    memcpy(m.cmd, "adds", 4);
    assert_int_equal(wl_cmd_parse(&m), WL_CMD_ID_ADDS);
    memcpy(m.cmd, "ADDS", 4);
    assert_int_equal(wl_cmd_parse(&m), WL_CMD_ID_UNKNOWN);
    memcpy(m.cmd, "frze", 4);
    assert_int_equal(wl_cmd_parse(&m), WL_CMD_ID_FRZE);
    assert_int_equal(wl_msg_len((const uint8_t *)"frze"), sizeof(struct wl_frze_reply));
    assert_int_equal(sizeof(struct wl_frze_reply), 32);
}

static void test_ring_new_requests(void **state)
{
    RING_IDX n = 999;

    (void)state;
    /* Nothing in flight: up to a whole ring, also across the index wrap. */
    assert_int_equal(wl_ring_new_requests(128, 0, 0, &n), 0);
    assert_int_equal(n, 128);
    assert_int_equal(wl_ring_new_requests(0x10, 0xfffffff0u, 0xfffffff0u, &n), 0);
    assert_int_equal(n, 0x20);
    assert_int_equal(wl_ring_new_requests(129, 0, 0, &n), -EPROTO);
    assert_int_equal(wl_ring_new_requests(0xffffffffu, 0, 0, &n), -EPROTO);
    /* Ten reads in flight leave room for 118 more. */
    assert_int_equal(wl_ring_new_requests(128, 10, 0, &n), 0);
    assert_int_equal(n, 118);
    /* req_prod moved back behind req_cons while reads are in flight: still
     * within a ring of rsp_prod, but no new request can be behind req_cons. */
    assert_int_equal(wl_ring_new_requests(5, 10, 0, &n), -EPROTO);
    assert_int_equal(wl_ring_new_requests(9, 10, 0, &n), -EPROTO);
    assert_int_equal(wl_ring_new_requests(10, 10, 0, &n), 0);
    assert_int_equal(n, 0);
}

static void test_ring_request_check(void **state)
{
    log_request_t req = { .sector = 0, .count = 8, .offset = 0 };

    (void)state;
    assert_int_equal(wl_ring_request_check(&req, 8), 0);
    assert_int_equal(wl_ring_request_check(&req, 7), -ERANGE);
    req.count = 0;
    assert_int_equal(wl_ring_request_check(&req, 8), -EINVAL);
    req.count = WL_RING_MAX_SECTORS + 1;
    assert_int_equal(wl_ring_request_check(&req, UINT64_MAX), -EINVAL);
    req.count = 1;
    req.offset = WL_DATA_SIZE - WL_SECTOR_SIZE + 1;
    assert_int_equal(wl_ring_request_check(&req, 8), -EFAULT);
    req.sector = UINT64_MAX;
    req.offset = 0;
    assert_int_equal(wl_ring_request_check(&req, UINT64_MAX), -ERANGE);
}

static void test_replies(void **state)
{
    struct wl_shmp_reply shmp;
    struct wl_export_reply exp = { .extents = WL_EXPORT_MAX };

    (void)state;
    assert_int_equal(wl_msg_len((const uint8_t *)"done"), WL_RSPLEN_DONE);
    assert_int_equal(wl_msg_len((const uint8_t *)"busy"), WL_CTLMSG_LEN);
    assert_int_equal(wl_msg_len((const uint8_t *)"info"), sizeof(struct wl_info_reply));
    assert_int_equal(wl_msg_len((const uint8_t *)"shmp"), 0);
    assert_int_equal(wl_msg_len((const uint8_t *)"cowc"), 80);
    assert_int_equal(wl_msg_len((const uint8_t *)"adds"), 32);
    assert_int_equal(wl_msg_errno(EBUSY), -EBUSY);
    assert_int_equal(wl_msg_errno(0), -EPROTO);
    assert_int_equal(wl_msg_errno(-5), -EPROTO);
    memset(&shmp, 'x', sizeof(shmp));
    shmp.shm_size = WL_SHM_SIZE;
    assert_int_equal(wl_shmp_reply_check(&shmp), -EPROTO); /* no NUL */
    shmp.shm_name[10] = '\0';
    assert_int_equal(wl_shmp_reply_check(&shmp), 0);
    assert_int_equal(wl_export_reply_check(&exp), 0);
    exp.extents++;
    assert_int_equal(wl_export_reply_check(&exp), -EPROTO);
}

static void test_read_round(void **state)
{
    struct wl_read_round rr;
    log_request_t req;
    log_response_t rsp;

    (void)state;
    /* 1,100 sectors in requests of 512: 512 + 512 + 76. */
    wl_read_round_plan(&rr, 1000, 1100, 512);
    assert_int_equal(rr.n, 3);
    assert_int_equal(rr.sectors, 1100);
    wl_read_round_request(&rr, 2, &req);
    assert_int_equal(req.sector, 2024);
    assert_int_equal(req.count, 76);
    assert_int_equal(req.offset, 1024 * 512);
    /* The data area bounds a round: 15 requests of 512 fit, not 16. */
    wl_read_round_plan(&rr, 0, UINT64_MAX, 512);
    assert_int_equal(rr.n, 15);
    assert_int_equal(rr.sectors, 15 * 512);

    wl_read_round_plan(&rr, 1000, 1100, 512);
    /* Longer than its request: would overrun the caller's buffer. */
    rsp = (log_response_t){ .sector = 2024, .count = 512, .offset = 1024 * 512 };
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    /* Not at a request's start, or at the wrong offset. */
    rsp = (log_response_t){ .sector = 1001, .count = 511, .offset = 512 };
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    rsp = (log_response_t){ .sector = 1512, .count = 512, .offset = 0 };
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    /* An echo is accepted once. */
    rsp = (log_response_t){ .sector = 1512, .count = 512, .offset = 512 * 512 };
    assert_int_equal(wl_read_round_response(&rr, &rsp), 0);
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    /* A failed read carries a small errno; anything else is a protocol error. */
    rsp = (log_response_t){ .sector = 1000, .count = 0, .offset = EIO };
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EIO);
    rsp.offset = 0;
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    rsp.offset = 0x80000000u;
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
    rsp.offset = 0x80000001u;
    assert_int_equal(wl_read_round_response(&rr, &rsp), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_split_messages),
        cmocka_unit_test(test_cmd_printable),
        cmocka_unit_test(test_cmd_parse_version_2),
        cmocka_unit_test(test_ring_new_requests),
        cmocka_unit_test(test_ring_request_check),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_read_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
