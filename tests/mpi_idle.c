/* A rank that joins MPI and then stays silent for the seconds given (default 60): in an MPMD
 * launch beside starmoe it plays a peer that never answers the start-up exchange, so that
 * tests/test_mpi.sh sees parallel.timeout_s name it. */
#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
    sleep(argc > 1 ? (unsigned)atoi(argv[1]) : 60);
    MPI_Finalize();
    return 0;
}
