"""Workload preparation: the examples and rendered prompts, the model (with its LoRA
checkpoint) and the sampler of one evaluation."""

from __future__ import annotations

from typing import Any

from gsm8k_eval.evaluation.options import EvaluateOptions, Workload


def render_prompts(options: Any) -> tuple[list[Any], list[str], tuple[str, ...]]:
    """The examples, their rendered prompts and the template's stop sequences (`options`: any
    object with the dataset and prompt fields of `EvaluateOptions`; the reference stage's too)."""
    from gsm8k_eval.data import load_examples
    from gsm8k_eval.prompts import PromptBuilder, PromptConfig

    examples = load_examples(options.dataset_path, options.limit)
    builder = PromptBuilder(
        PromptConfig(
            template=options.prompt_template,
            num_shots=options.num_shots,
            seed=options.prompt_seed,
            train_path=options.fewshot_path,
        )
    )
    prompts = [builder.render(example.question) for example in examples]
    return examples, prompts, builder.stop_sequences


def prepare(options: EvaluateOptions) -> Workload:
    """Load the model (and checkpoint), build the sampler and tokenize the prompts."""
    from gsm8k_eval.checkpoints import LoraConfig, apply_checkpoint
    from gsm8k_eval.evaluation import requests
    from gsm8k_eval.models import load_model
    from gsm8k_eval.sampling import SamplerConfig, make_sampler

    requests.check_sampling(options.temperature, options.num_samples, options.sampler)
    examples, prompts, stop_sequences = render_prompts(options)
    loaded = load_model(options.model_dir, options.dtype)
    model = loaded.model
    if options.checkpoint_dir is not None:
        lora = LoraConfig(
            rank=options.lora_rank,
            alpha=options.lora_alpha,
            module_path=options.lora_module_path,
        )
        model = apply_checkpoint(model, options.checkpoint_dir, lora)
    sampler_config = SamplerConfig(
        max_prompt_length=options.max_prompt_length,
        max_generation_steps=options.max_generation_steps,
        eos_tokens=tuple(options.eos_tokens),
        pad_id=loaded.tokenizer.pad_id,
        temperature=options.temperature,
        top_k=options.top_k,
        top_p=options.top_p,
        seed=options.sampling_seed,
    )
    sampler = make_sampler(
        options.sampler,
        model,
        loaded.tokenizer,
        sampler_config,
        options.decode_rows,
        options.segment_steps,
        prefill_rows=options.prefill_rows,
    )
    indices = None
    if requests.is_sampled(options):  # one request per (question, sample index)
        indices = requests.sample_indices(len(examples), options.num_samples)
        examples = requests.expand(examples, options.num_samples)
        prompts = requests.expand(prompts, options.num_samples)
    prompt_ids = [loaded.tokenizer.encode(prompt) for prompt in prompts]
    return Workload(
        examples=examples,
        prompts=prompts,
        prompt_ids=prompt_ids,
        sampler=sampler,
        stop_sequences=stop_sequences,
        tokenizer=loaded.tokenizer,
        sample_indices=indices,
    )
