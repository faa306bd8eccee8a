/* engine-fixture.h — the compute-transformer plugin and its four heads,
 * loaded and started through the host's plugin runtime as loomd starts
 * them (instances named after the heads' tasks), for the unit tests that
 * train models and open them for prediction (test-predict,
 * test-uncertainty).  fx_setup and fx_teardown are a checked fixture. */
#ifndef LOOM_TEST_ENGINE_FIXTURE_H
#define LOOM_TEST_ENGINE_FIXTURE_H

#include <loom/compute.h>
#include <loom/host.h>

extern const loom_host *host;
extern loom_instance *tf;          /* the compute-transformer instance */
extern const loom_compute_ops *ops;
extern char *tmp;                  /* a private directory, removed after each test */

void fx_setup(void);
void fx_teardown(void);
/* tf_spec_parse's head lookup: the instance names are the tasks'. */
int fx_head_task(void *arg, const char *name);
/* Train spec (JSON) into out with 2 threads; the run must succeed. */
void fx_train(const char *spec, const char *out);

#endif /* LOOM_TEST_ENGINE_FIXTURE_H */
