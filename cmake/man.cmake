# man.cmake — build step: the man page attnbench.1 is `attnbench --man` (cli/main.c), generated
# from the same flag table and usage texts as --help; never written by hand.
execute_process(COMMAND ${EXE} --man OUTPUT_FILE ${OUT}.tmp RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "attnbench --man failed (${rc}): ${err}")
endif()
file(RENAME ${OUT}.tmp ${OUT})
