# Install eigenformer into a scratch prefix, then build and run tests/consumer against it with
# find_package, and again with add_subdirectory. Run with cmake -P (see tests/CMakeLists.txt).
foreach(var SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer_test.cmake: ${var} is not set")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

# 1. install
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_INSTALL_PREFIX=${prefix}
    -DEIGENFORMER_BUILD_TESTS=OFF -DEIGENFORMER_BUILD_EXAMPLES=OFF -DEIGENFORMER_BUILD_BENCHMARKS=OFF)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)

# The installed package config must be architecture independent: no ISA flags in it.
file(GLOB_RECURSE cfg_files ${prefix}/share/cmake/eigenformer/*.cmake)
if(NOT cfg_files)
  message(FATAL_ERROR "no package config files installed under ${prefix}/share/cmake/eigenformer")
endif()
foreach(f ${cfg_files})
  file(READ ${f} text)
  if(text MATCHES "-march|-mavx|-mfma|-mcpu")
    message(FATAL_ERROR "${f} names ISA flags")
  endif()
endforeach()

# 2. find_package consumer
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/find -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find)
run(${WORK_DIR}/find/consumer)

# 3. add_subdirectory consumer
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/subdir -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DEIGENFORMER_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/subdir)
run(${WORK_DIR}/subdir/consumer)
