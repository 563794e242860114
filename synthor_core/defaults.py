"""Named tolerances and limits, in one place (STYLE.md, rule 7). Units are in the names or comments."""

import os


def _umask() -> int:
    """The process umask, read from /proc where it can be (setting it, even briefly, races other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- files --------------------------------------------------------------------------------------
FILE_MODE = 0o666 & ~_umask()  # mode of a file written through a temporary file and renamed (umask read at import)

# --- engine -------------------------------------------------------------------------------------
MAX_ITERATIONS = 100  # iterations of the loop (the paper's fixed budget)
MAX_POPULATION = 2_000_000_000  # persons of one person project at most (a larger N is refused by validation)
TOLERANCE_TVD = 0.005  # mean TVD over target tables at which the loop stops
ATTRIBUTION_TOP_K = 12  # cells per direction (under / over) handed to the prior as guidance
PAPER_MAX_PROPOSALS = 5  # proposals per iteration in paper mode (LLMSynthor §3)
FULL_MAX_PROPOSALS = 24  # proposals per iteration in full mode
FULL_STEP = 0.6  # share of a cell's deficit or excess that one proposal corrects (full mode)
PATIENCE_ITERATIONS = 8  # full mode stops when mean TVD has not improved by 1 % over this many iterations

# --- maxent prior --------------------------------------------------------------------------------
MAXENT_MAX_CLIQUE_CELLS = 20_000_000  # cells of one junction-tree clique; larger -> the table is left out
MAXENT_IPF_MAX_SWEEPS = 2_000  # sweeps over all tables
MAXENT_IPF_TOLERANCE = 1e-9  # max absolute share error at which the joint is considered fitted
MAXENT_IPF_STALL_SWEEPS, MAXENT_IPF_STALL = 25, 1e-3  # with rules: stop when 25 sweeps gain less than 0.1 %
STARVED_SHARE = 1e-6  # a target cell whose fitted share is below this part of its target gets no one (contradiction)
MAXENT_RECORDS_PER_PROPOSAL = 20_000  # distinct records one proposal may create (maxent prior)

# --- calibration ---------------------------------------------------------------------------------
RAKE_MAX_ITER = 500  # sweeps over all tables
RAKE_TOLERANCE = 1e-7  # max absolute share error over all cells at which raking stops
RAKE_STATIONARY = 1e-6  # raking that did not converge stops when its errors fell less than this (relative) ...
RAKE_STATIONARY_SWEEPS = 20  # ... over this many sweeps
RAKE_NEWTON_STEPS = 8  # Newton steps per sweep when a numeric control tilts its cells' weights (calibrate._tilt)
RAKE_MAX_COMPANION_SYSTEM = (
    1_000_000  # entries of _tilt's Newton matrix at most (companion table cells + control cells)^2
)

# --- harmonization -------------------------------------------------------------------------------
MARGINAL_DISAGREEMENT = 0.01  # relative difference of one category's count between two tables that is reported
TOTAL_MISMATCH = 1e-6  # relative difference of a table total from the population size that triggers scaling
MIN_RECORDS_PER_PROPOSAL = 5  # distinct records a proposal gets at least (when its count allows)

# --- plausibility rules --------------------------------------------------------------------------
RULE_POINTS_PER_CELL = 16  # values per fine cell of a continuous variable at which a rule is checked
RULE_INTEGER_POINTS = 32  # whole numbers per fine cell checked one by one (more: this many, evenly spaced)
RULE_REDRAW_ROUNDS = 5  # redraws of records that break a rule before a proposal gets fewer records

# --- households: list balancing over zones (PopulationSim's list balancer, constants.py) ---------
BALANCE_MAX_SWEEPS = 300  # sweeps over all controls (CALM: TRACT controls within 1 % of PopulationSim's fit at 300)
SURVEY_WEIGHTING_MAX_SWEEPS = 10_000  # survey weighting balances as long as PopulationSim (DEFAULT_MAX_ITERATIONS)
SURVEY_WEIGHTING_SLICE = 250  # survey weighting: sweeps per iteration (no proposals between them, one event each)
BALANCE_TOLERANCE = 1e-5  # largest |gamma - 1| over all controls and zones at which balancing stops
BALANCE_MIN_IMPORTANCE = 1.0  # importance never falls below this while it is relaxed over the sweeps
BALANCE_IMPORTANCE_HALVING_SWEEPS = 100  # importance of soft controls halves every this many sweeps
BALANCE_MAX_RELAXATION = 1e6  # largest factor by which a soft control may be relaxed
BALANCE_MIN_CONTROL = 0.1  # a zero control is balanced towards this value (avoids zero weights forever)
BALANCE_MIN_GAMMA = 1e-10  # smallest balancing factor in one step
BALANCE_STATIONARY_SHARE = 0.01  # stationary: no weighted count moves more than this x tolerance (relative) a sweep
BALANCE_SWEEPS_PER_ITERATION = 25  # sweeps between two measurements of the gap (one iteration of the household loop)
HOUSEHOLD_PROPOSAL_CANDIDATES = 20  # distinct households one proposal adds at most (households in zones)
HOUSEHOLD_PROPOSAL_MIN_GAP = 0.5  # a control-zone pair missing fewer units than this is not proposed for
HOUSEHOLD_PROPOSAL_START = (
    0.1  # share of a control-zone gap a proposal's new candidates start with (balancing grows it)
)
HOUSEHOLD_PROPOSAL_SWEEPS = 0.5  # share of the balancing sweeps during which proposals add candidates (then it settles)
HOUSEHOLD_FALLBACK_START = 0.1  # starting weight of maxent's candidates beside the LLM's (CALM, knowing endpoint, 1,000
# households, seed 1: realism 0.171 / 0.138 / 0.130 at 1 / 0.3 / 0.1, households from the LLM 35 / 57 / 66 %)
HOUSEHOLD_STALL_ITERATIONS = 2  # once proposals end, balancing stops when this many iterations did not lower the
HOUSEHOLD_STALL = 0.01  # worst %RMSE by 1 % (CALM, seeds 1-2: seed prior 18 s -> 14 s, 12 -> 7-8 iterations; maxent
# 13 s -> 11 s; every control group's integerized fit within a seed's noise)
HOUSEHOLD_PROPOSAL_RESERVE = (
    0.1  # share of the LLM's distinct households kept for the loop's proposals (the rest: support)
)
# --- households: integerization per zone ----------------------------------------------------------
INTEGERIZE_POOL_FACTOR = 8  # candidate households per household still to place (drawn by fractional weight)
INTEGERIZE_MIN_POOL = 300  # candidate households at least (when the zone's seed has that many)
INTEGERIZE_MAX_IMPORTANCE = 1e4  # importances are scaled so the smallest is 1 and capped at this
INTEGERIZE_MAX_SWAPS = 200  # swaps of one placed household for another that lower the zone's deviation
INTEGERIZE_SWAP_SHORTLIST = 30  # best single removals and additions whose pairs are tried per swap (CALM maxent,
# seed 1: students' worst %RMSE 6.46 at 12, 4.81 at 30, head age and income 0.42 -> 0.00; about 1 s more)
REPAIR_GIVERS = 8  # records tried per move as the one giving a person (calibrate.repair_rounding)
REPAIR_TVD = 1e-4  # the rounding repair stops once every table is this close (TVD) to its calibrated counts
REPAIR_WORK = 15_000_000  # records x constraints x moves at most in one rounding repair (about 1 s)
REPAIR_MAX_MOVES = 2000  # persons moved at most from one record to another after rounding (calibrate.repair_rounding)
INTEGERIZE_LAST_ZONE_BOOST = 10.0  # importance factor of an upper-level control in the last zone of its group
INTEGERIZE_UPPER_WEIGHT = 0.1  # importance factor of an upper-level control in its group's other zones (its miss
# there is carried to the next zones); CALM maxent, seed 1: students' worst %RMSE 11.83 at 1.0, 5.99 at 0.1, 5.76 at
# 0.05, while 0.01 leaves the REGION occupations 0.78 off (the last zone cannot absorb what was carried)
PCT_RMSE_WORST_ZONES = 5  # zones listed per control in the report (largest absolute difference first)
PARTITION_MMAP_THRESHOLD = 32 * 1024 * 1024  # bytes: smaller arrays reuse freed heap memory (glibc mallopt)
PARTITION_TRIM_THRESHOLD = 256 * 1024 * 1024  # bytes of free heap kept before glibc returns memory to the system
DASK_CONNECT_TIMEOUT_S = 30  # seconds to reach a Dask scheduler before the run stops with an error
MAX_HOUSEHOLDS = 50_000_000  # households one run may place (a control file asking for more is refused)
# --- households: the maxent prior's candidate households (priors/households.py) ---------------
HOUSEHOLD_MAXENT_POOL = 2000  # candidate households per seed zone
HOUSEHOLD_MAXENT_MAX_CELLS = 2_000_000  # cells of the household joint at most
HOUSEHOLD_MAX_SIZE = 20  # members of a candidate household at most
HOUSEHOLD_WIDE_BIN = 4.0  # a category this many times wider than its neighbour gets a tail, not a uniform
HOUSEHOLD_TAIL_CAP = 4.0  # a tail is truncated at this many of its means above the category's floor
HOUSEHOLD_MAX_ENUMERATED = 100_000  # whole numbers of a category listed one by one (more: assumed contiguous)
HOUSEHOLD_CONCENTRATED_SHARE = 0.05  # candidates per person category whose members all fall in it, per pool
CODEBOOK_MAX_CODES = 40  # a whole-number column with at most this many distinct sample values is coded, else a range
RULE_MIN_SUPPORT = 20  # sample units a value must have before the sample's support gives a rule about it
RULE_MIN_SAMPLE = 1000  # units of a kind a sample must have before its support gives rules about them
LLM_DEGRADED_SHARE = 0.10  # an LLM run whose final records come less than this share from the LLM is "degraded"

# --- trips (DESIGN §13) ---------------------------------------------------------------------------------------------
TRIP_IPF_MAX_SWEEPS = 1_000  # sweeps over every trip target (IPF over the trip cells)
TRIP_IPF_TOLERANCE = 1e-7  # largest relative error of a target cell with at least one trip at which IPF stops
TRIP_IPF_STALL_SWEEPS, TRIP_IPF_STALL = 20, 1e-3  # stop when 20 sweeps cut the largest error by less than 0.1 %
GRAVITY_MAX_SWEEPS = 1_000  # Furness sweeps (balancing rows and columns) of one gravity model
GRAVITY_TOLERANCE = 1e-8  # largest relative error of a row or column total at which Furness stops
GRAVITY_BISECTION_STEPS = 60  # halvings of the deterrence parameter's bracket when it is fitted to a mean trip length
TRIP_SAMPLE_SPREAD = 0.05  # share of a diary-seeded trip prior spread over every cell as the prior without it
LLM_TRIP_PERSONS = 60  # travellers whose day the LLM writes (a synthetic diary seeding the trip prior)
LLM_TRIP_PERSONS_PER_CALL = 10  # days asked in one call
LLM_TRIP_DESTINATIONS = 12  # zones nearest home a traveller's first stop is chosen among
TRIP_TABLES_DISAGREE = 0.01  # largest relative error of a fitted trip table cell above which a run warns
INTRAZONAL_CIRCLE_FACTOR = 128 / (45 * 3.141592653589793)  # mean distance of two points in a disc, x its radius
