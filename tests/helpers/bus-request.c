/* bus-request — send one request to a loomd bus from another process, as a
 * worker would, and print the reply body.  For the integration tests.
 *
 *   bus-request ADDRESS SERVICE [BODY]
 *
 * Exit status: 0 and the reply on stdout; 1 and the error on stderr. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "host/core/bus.h"

int
main(int argc, char **argv)
{
	loomi_bus_client *c;
	char *err = NULL, *reply = NULL;
	int rv;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: bus-request ADDRESS SERVICE [BODY]\n");
		return 2;
	}
	if ((rv = loomi_bus_client_open(argv[1], NULL, 0, &c, &err)) != 0) {
		fprintf(stderr, "bus-request: %s\n", err ? err : loom_strerror(rv));
		free(err);
		return 1;
	}
	rv = loomi_bus_client_request(c, argv[2], "bus-request", argc == 4 ? argv[3] : "{}", 5000,
	                              &reply);
	if (rv == 0)
		printf("%s\n", reply ? reply : "{}");
	else
		fprintf(stderr, "bus-request: %s (%s)%s%s\n", loom_strerror(rv), loom_errname(rv),
		        reply ? ": " : "", reply ? reply : "");
	free(reply);
	loomi_bus_client_close(c);
	return rv == 0 ? 0 : 1;
}
