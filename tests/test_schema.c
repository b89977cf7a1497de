/* test_schema.c — the results schema's one list of statuses and its version (core/results.h):
 * every status round-trips through its name, the version files are stamped with reads back,
 * newer or malformed versions do not, and run ids are accepted in the generated shape only. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/results.h"

int main(void) {
    int v = results_schema_version();
    char want[64];
    snprintf(want, sizeof want, "attnbench.results/%d", v);
    check(v >= ATTN_RESULTS_BASE_VERSION && !strcmp(results_schema_name(), want), "files are stamped with the version",
          "version %d, name %s", v, results_schema_name());
    check(results_schema_parse(results_schema_name()) == v, "the stamped version reads", "got %d",
          results_schema_parse(results_schema_name()));
    for (int old = 1; old < v; old++) { /* the rule: every earlier version still reads */
        snprintf(want, sizeof want, "attnbench.results/%d", old);
        check(results_schema_parse(want) == old, want, "an earlier version must read");
    }
    snprintf(want, sizeof want, "attnbench.results/%d", v + 1);
    check(results_schema_parse(want) == 0, "a newer version does not read", "%s read as %d", want,
          results_schema_parse(want));
    static const char *const bad[] = {"attnbench.results/0", "attnbench.results/01", "attnbench.results/1x",
                                      "attnbench.results/", "attnbench.results/+1", "other.results/1", "", NULL};
    for (int i = 0; i < 7; i++)
        check(results_schema_parse(bad[i]) == 0, "malformed schema refused", "'%s' read as %d", bad[i],
              results_schema_parse(bad[i]));
    check(results_schema_parse(NULL) == 0, "no schema refused", "read");

    /* Each status: its name parses back to it in the version it was written in. */
    for (int s = 0; s < REC_N_STATUSES; s++) {
        attn_status_t got = REC_N_STATUSES;
        int ok = status_parse(status_name((attn_status_t)s), v, &got);
        check(ok && got == (attn_status_t)s, status_name((attn_status_t)s), "parsed %d as %d", ok, (int)got);
    }
    attn_status_t got;
    static const char *const unknown[] = {"bogus", "PASS", "", "pass "};
    for (int i = 0; i < 4; i++)
        check(!status_parse(unknown[i], v, &got), "an unknown status is refused", "'%s' parsed", unknown[i]);
    check(!status_parse("pass", 0, &got), "no status before version 1", "parsed");
    /* approximate (approximate backends) came with version 2: a version-1 file cannot carry it */
    check(!status_parse("approximate", 1, &got), "approximate is refused in a version-1 file", "parsed");
    check(status_parse("approximate", 2, &got) && got == REC_APPROXIMATE, "approximate reads from version 2", "no");

    /* The run id results_run_init makes is valid; nothing else is. */
    attn_run_t run;
    attn_err_t err = {0};
    char *argv[] = {"test"};
    if (check(results_run_init(&run, 1, argv, 1, 1, &err) == ATTN_OK, "run init", "%s", err.msg)) {
        check(results_run_id_valid(run.run_id), "a generated run id is valid", "%s refused", run.run_id);
        results_run_free(&run);
    }
    static const char *const ids[] = {"/../../x", "20261123T062251Z-2AA999", "20261123T062251Z-2aa99",
                                      "20261123T062251Z-2aa9999", "20261123T062251Z/2aa999", "2026112xT062251Z-2aa999",
                                      "20261123T062251Z-2aa99g", "", "fixture-b"};
    for (int i = 0; i < 9; i++)
        check(!results_run_id_valid(ids[i]), "a run id of another shape is refused", "'%s' accepted", ids[i]);
    check(results_run_id_valid("20261123T062251Z-2aa999"), "the fixture's run id is valid", "refused");
    return check_summary();
}
