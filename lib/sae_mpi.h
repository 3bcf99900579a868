/* sae_mpi.h: the communicator (comm.h) of sae-fit run by mpirun, over MPI.
 * Only sae-fit links this file and libmpi; a run not started by mpirun
 * never calls MPI at all. */
#ifndef SP_SAE_MPI_H
#define SP_SAE_MPI_H

#include "comm.h"

/* Under mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK in the
 * environment) with more than one rank: MPI initialised, the program's
 * name in messages made "sae-fit (rank R of N on HOST)", an exit before
 * sae_mpi_finish aborting every rank (so sp_die on one rank ends the run),
 * and the communicator returned. Otherwise NULL, and nothing done. */
SpComm *sae_mpi_init(int *argc, char ***argv);
/* The run's end on every rank: MPI finalised. */
void sae_mpi_finish(SpComm *c);

#endif
