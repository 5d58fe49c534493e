package manifests_test

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

func jobSpec(o render.Object) *corev1.PodSpec {
	switch x := o.Typed.(type) {
	case *batchv1.Job:
		return &x.Spec.Template.Spec
	case *batchv1.CronJob:
		return &x.Spec.JobTemplate.Spec.Template.Spec
	}
	return nil
}
