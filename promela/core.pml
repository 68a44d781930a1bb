/*
 * The core mmcheck scenario in Promela, for Spin: the series' V1 vhost worker (long-term GUP pin of a
 * shared ext4 page, vmap, writes through the vmap, set_page_dirty_lock at unpin), background writeback
 * (two passes) and page reclaim (one pass). It mirrors src/SharpVhost.MmCheck step for step: each
 * atomic block below is one step of the C# model (Operations/Writeback.cs, Operations/Reclaim.cs,
 * Strategies/GupLongterm.cs, Model/WriteFault.cs), restricted to an ext4 page. The one property
 * checked is the ext4 BUG: a dirty page without buffers reaching writepage.
 *
 *   spin -DROUNDS=1 -DFIX=0 -a core.pml && gcc -O2 -DSAFETY -o pan pan.c && ./pan -E
 *
 * FIX=1 makes try_to_free_buffers refuse pages with page_maybe_dma_pinned(). SPECS speculative
 * page-cache lookups (get_page_unless_zero, put_page; SPECPASSES times each) only grow the state space,
 * for the states/s benchmark (mmcheck --bench-vs-spin).
 */
#ifndef ROUNDS
#define ROUNDS 1
#endif
#ifndef FIX
#define FIX 0
#endif
#ifndef SPECS
#define SPECS 0
#endif
#ifndef SPECPASSES
#define SPECPASSES 1
#endif

/* page flags */
#define ALLOC   1
#define LOCKED  2
#define DIRTY   4
#define WB      8
#define BUF     16
#define INCACHE 32
#define FREED   64
#define WP      128
/* pte flags */
#define PW      1
#define PD      2
#define PSWAP   4
#define NONE    255

byte ref[3];
byte pin[3];
byte flags[3];
byte ptepage;
byte pteflags;
bool vmalive;
byte vmap;
byte nactive;

#define LIVE(i)   ((flags[i] & INCACHE) && !(flags[i] & FREED))
#define CACHED    (LIVE(0) -> 0 : (LIVE(1) -> 1 : (LIVE(2) -> 2 : NONE)))
#define MAPPED    ((ptepage == 0 || (pteflags & PSWAP)) -> NONE : ptepage - 1)
#define CURRENT   (MAPPED != NONE -> MAPPED : CACHED)
#define FREESLOT  (flags[0] == 0 -> 0 : (flags[1] == 0 -> 1 : (flags[2] == 0 -> 2 : NONE)))
#define LOOKUP    ((ptepage != 0 && !(flags[ptepage - 1] & FREED)) -> ptepage - 1 : CACHED)
#define GUPFAST   ((vmalive && MAPPED != NONE && (pteflags & PW) && ref[MAPPED] > 0) -> MAPPED : NONE)

inline put_page(p) {
  ref[p] = ref[p] - 1;
  if
  :: ref[p] == 0 -> flags[p] = ALLOC | FREED
  :: else -> skip
  fi
}

inline set_page_dirty(p) {
  if
  :: !(flags[p] & FREED) -> flags[p] = flags[p] | DIRTY
  :: else -> skip
  fi
}

/* ext4 writepage: BUG_ON(!page_has_buffers(page)) */
inline writepage(p) {
  assert(flags[p] & BUF)
}

proctype worker() {
  byte p = 0;
  byte sub = 0;
  byte r = 0;
  byte t = 0;
  byte res = 0;   /* fault step result: 0 running, 1 done, 2 failed */
gup:
  if
  /* get_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM) */
  :: atomic { (sub == 0 && GUPFAST != NONE) -> p = GUPFAST; ref[p] = ref[p] + 1; pin[p] = pin[p] + 1 }; goto vm
  /* the GUP slow path: one step of handle_mm_fault */
  :: atomic { (!(sub == 0 && GUPFAST != NONE) &&
               (sub != 0 || !(vmalive && MAPPED == NONE &&
                              ((LOOKUP != NONE && ref[LOOKUP] == 0) || (LOOKUP == NONE && FREESLOT == NONE)))) &&
               (sub != 1 || !(flags[p] & LOCKED))) ->
       res = 0;
       if
       :: sub == 0 ->
          if
          :: !vmalive -> res = 2
          :: vmalive && MAPPED != NONE && (pteflags & PW) -> res = 1
          :: vmalive && MAPPED != NONE && !(pteflags & PW) -> p = MAPPED; ref[p] = ref[p] + 1; sub = 1
          :: vmalive && MAPPED == NONE && LOOKUP != NONE -> p = LOOKUP; ref[p] = ref[p] + 1; sub = 1
          :: vmalive && MAPPED == NONE && LOOKUP == NONE ->
             p = FREESLOT; flags[p] = ALLOC | INCACHE | BUF; ref[p] = 2; sub = 1
          fi
       :: sub == 1 -> flags[p] = flags[p] | LOCKED; sub = 2
       :: sub == 2 ->
          if
          :: !(flags[p] & INCACHE) && MAPPED != p ->
             flags[p] = flags[p] & ~LOCKED; put_page(p); sub = 0
          :: else -> sub = 3; flags[p] = flags[p] | BUF; set_page_dirty(p)
          fi
       :: sub == 3 ->
          t = MAPPED;
          if
          :: t != p && t != NONE -> flags[p] = flags[p] & ~LOCKED; put_page(p); sub = 0
          :: else ->
             if
             :: t == p -> put_page(p)
             :: else -> ptepage = p + 1
             fi;
             pteflags = PW | PD; flags[p] = flags[p] & ~WP; flags[p] = flags[p] & ~LOCKED; sub = 0; res = 1
          fi
       fi;
       t = 0;
       if
       :: res == 2 -> goto done
       :: else -> goto gup
       fi
     }
  fi;
vm:
  /* vmap(pinned page) */
  atomic { vmap = p + 1 };
loop:
  if
  /* write used ring through vmap */
  :: atomic { r < ROUNDS -> r = r + 1 }; goto loop
  /* stop: set_page_dirty_lock: lock_page */
  :: atomic { (r >= ROUNDS && !(flags[p] & LOCKED)) -> flags[p] = flags[p] | LOCKED }
  fi;
  /* set_page_dirty, unlock_page */
  atomic { set_page_dirty(p); flags[p] = flags[p] & ~LOCKED };
  /* vunmap, put_page */
  atomic { vmap = 0; pin[p] = pin[p] - 1; put_page(p) };
done:
  skip
}

proctype writeback() {
  byte passes = 2;
  byte p = 0;
  byte c = 0;
  bool ptedirty = 0;
pass:
  if
  /* no dirty page, pass ends */
  :: atomic { (CACHED == NONE || !(flags[CACHED] & DIRTY)) -> passes = passes - 1 };
     if
     :: passes == 0 -> goto done
     :: else -> goto pass
     fi
  /* find dirty page, get_page */
  :: atomic { (CACHED != NONE && (flags[CACHED] & DIRTY) && ref[CACHED] > 0) ->
       p = CACHED; ref[p] = ref[p] + 1 }
  fi;
  /* lock_page */
  atomic { !(flags[p] & LOCKED) -> flags[p] = flags[p] | LOCKED };
  atomic {
    if
    /* page no longer dirty: unlock_page, put_page */
    :: !(flags[p] & DIRTY) || !(flags[p] & INCACHE) ->
       flags[p] = flags[p] & ~LOCKED; put_page(p); passes = passes - 1;
       if
       :: passes == 0 -> goto done
       :: else -> goto pass
       fi
    /* clear_page_dirty_for_io: page_mkclean */
    :: else -> ptedirty = 0;
       if
       :: MAPPED == p -> goto mkclean
       :: else -> goto cleared
       fi
    fi
  };
mkclean:
  /* invalidate_range_start (no subscriber) */
  atomic { nactive = nactive + 1 };
  /* page_mkclean_one: write-protect and clean pte */
  atomic {
    if
    :: MAPPED == p ->
       if
       :: pteflags & PD -> ptedirty = 1
       :: else -> skip
       fi;
       pteflags = pteflags & ~(PW | PD)
    :: else -> skip
    fi;
    flags[p] = flags[p] | WP
  };
  /* invalidate_range_end */
  atomic { nactive = nactive - 1 };
cleared:
  /* TestClearPageDirty, set_page_writeback */
  atomic {
    if
    :: ptedirty -> set_page_dirty(p)
    :: else -> skip
    fi;
    flags[p] = flags[p] & ~DIRTY; flags[p] = flags[p] | WB
  };
  /* writepage (submit I/O), unlock_page */
  atomic { writepage(p); flags[p] = flags[p] & ~LOCKED };
  /* end_page_writeback, put_page */
  atomic { flags[p] = flags[p] & ~WB; put_page(p); passes = passes - 1; ptedirty = 0;
    if
    :: passes == 0 -> goto done
    :: else -> goto pass
    fi
  };
done:
  skip
}

proctype reclaim() {
  byte p = 0;
  /* isolate_lru_page, or nothing to isolate */
  atomic {
    if
    :: CURRENT == NONE || ref[CURRENT] == 0 -> goto done
    :: else -> p = CURRENT; ref[p] = ref[p] + 1
    fi
  };
  /* trylock_page */
  atomic {
    if
    :: flags[p] & LOCKED -> put_page(p); goto done
    :: else -> flags[p] = flags[p] | LOCKED
    fi
  };
  atomic {
    if
    :: flags[p] & WB -> flags[p] = flags[p] & ~LOCKED; put_page(p); goto done   /* keep */
    :: MAPPED == p -> nactive = nactive + 1        /* invalidate_range_start */
    :: else -> goto pageout                       /* page not mapped */
    fi
  };
  /* try_to_unmap_one: clear pte, transfer dirty bit */
  atomic {
    if
    :: MAPPED == p ->
       if
       :: pteflags & PD -> set_page_dirty(p)
       :: else -> skip
       fi;
       ptepage = 0; pteflags = 0; flags[p] = flags[p] | WP; put_page(p)
    :: else -> skip
    fi
  };
  /* invalidate_range_end */
  atomic { nactive = nactive - 1 };
pageout:
  /* pageout: clear_page_dirty_for_io, writepage (or: page clean) */
  atomic {
    if
    :: flags[p] & DIRTY -> flags[p] = flags[p] & ~DIRTY; writepage(p)
    :: else -> skip
    fi
  };
  /* try_to_release_page: try_to_free_buffers */
  atomic {
    if
    :: !(flags[p] & BUF) -> skip
    :: (flags[p] & BUF) && (flags[p] & DIRTY) -> flags[p] = flags[p] & ~LOCKED; put_page(p); goto done
    :: (flags[p] & BUF) && !(flags[p] & DIRTY) && FIX && pin[p] > 0 -> flags[p] = flags[p] & ~LOCKED; put_page(p); goto done
    :: else -> flags[p] = flags[p] & ~BUF
    fi
  };
  /* __remove_mapping: page_ref_freeze(2) */
  atomic {
    if
    :: ref[p] != 2 || (flags[p] & DIRTY) -> flags[p] = flags[p] & ~LOCKED; put_page(p)
    :: else -> ref[p] = 0; flags[p] = ALLOC | FREED
    fi;
    goto done
  };
done:
  skip
}

/* A lockless page-cache lookup elsewhere (Operations/SpeculativeLookup.cs). */
proctype spec() {
  byte p = 0;
  byte passes = SPECPASSES;
again:
  atomic {
    if
    :: CACHED == NONE -> goto done                          /* page not cached */
    :: CACHED != NONE && ref[CACHED] == 0 -> goto done      /* get_page_unless_zero fails */
    :: CACHED != NONE && ref[CACHED] > 0 -> p = CACHED; ref[p] = ref[p] + 1
    fi
  };
  /* put_page */
  atomic {
    put_page(p); passes = passes - 1;
    if
    :: passes == 0 -> goto done
    :: else -> goto again
    fi
  };
done:
  skip
}

/* The initial state: page 0 cached with buffers, clean, mapped read-only at the ring address. */
init {
  atomic {
    flags[0] = ALLOC | INCACHE | BUF;
    ref[0] = 2;
    ptepage = 1;
    pteflags = 0;
    vmalive = 1;
    run worker();
    run writeback();
    run reclaim();
    byte i = 0;
    do
    :: i < SPECS -> run spec(); i = i + 1
    :: else -> break
    od;
    i = 0
  }
}
