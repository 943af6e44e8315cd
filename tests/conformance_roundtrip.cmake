# CTest conformance_roundtrip: tools/make_golden.py --roundtrip RUNNER with the venv's Python.
# Variables: RUNNER (eigenformer-run), SCRIPT (tools/make_golden.py), DEFAULT_VENV (<source>/.venv).
# The venv is $ENV{EIGENFORMER_VENV} if set, else DEFAULT_VENV; without one the test prints
# "conformance_roundtrip: SKIPPED" (matched by SKIP_REGULAR_EXPRESSION) and passes as skipped.
foreach(var RUNNER SCRIPT DEFAULT_VENV)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "conformance_roundtrip.cmake: ${var} is not set")
  endif()
endforeach()

if(DEFINED ENV{EIGENFORMER_VENV} AND NOT "$ENV{EIGENFORMER_VENV}" STREQUAL "")
  set(venv "$ENV{EIGENFORMER_VENV}")
else()
  set(venv "${DEFAULT_VENV}")
endif()
set(python "${venv}/bin/python")
if(NOT EXISTS "${python}")
  message("conformance_roundtrip: SKIPPED (no Python venv at ${venv}; set EIGENFORMER_VENV or create .venv, "
          "see tools/requirements.txt)")
  return()
endif()

execute_process(COMMAND "${python}" "${SCRIPT}" --roundtrip "${RUNNER}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "conformance_roundtrip: failed (${rc})")
endif()
